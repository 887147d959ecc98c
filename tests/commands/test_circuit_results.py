"""``circuitft circuit``'s readable results: summary, definitions, warnings, random baseline, size curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitft.cli import main

from .test_circuit import PREFIX, write_csv


def run(*args: str | Path) -> int:
    return main(["circuit", "--quiet", "--model", "tiny-gpt2", "--method", "EAP", *map(str, args)])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "addsub.csv")


def test_summary_definitions_baseline_curve_and_warning(tmp_path: Path, data: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run("--data", data, "--top_n", "40", "--seed", "3", "--out", out) == 0
    stdout, stderr = capsys.readouterr()
    m = json.loads((out / "metrics.json").read_text())
    # the random model does not do the task: one warning on stderr and in the file, not repeated on stdout
    assert m["model_accuracy"] == 0.0 and len(m["warnings"]) == 1
    assert f"warning: {m['warnings'][0]}" in stderr and "the model answers only 0%" in stderr
    assert "warning:" not in stdout and "warning: the model answers only 0%" in m["summary"]
    # the summary printed is the file's, without the warning line
    assert m["summary"].split("\n  warning")[0] == stdout.split("\nn_edges=")[0]
    assert f"size: {m['n_edges']} edges" in stdout and "recovers" in stdout and "random circuit" in stdout
    # every reported number has a one-sentence definition
    for key in ("faithfulness", "kl_recovered_pct", "model_accuracy", "circuit_accuracy", "n_edges",
                "random_baseline", "size_curve", "smallest_80pct", "warnings"):  # fmt: skip
        assert key in m and m["definitions"][key], key
    base = m["random_baseline"]
    assert base["n_samples"] == 3 and base["seed"] == 3 and base["n_edges_sampled"] == 40
    values = base["faithfulness"]
    assert base["faithfulness_mean"] == pytest.approx(sum(values) / 3)
    assert base["faithfulness_std"] == pytest.approx(float(torch.tensor(values).std()))
    curve = m["size_curve"]
    assert [p["frac"] for p in curve] == sorted(p["frac"] for p in curve) and curve[-1]["frac"] == 0.5
    small = m["smallest_80pct"]
    reached = [p for p in curve if p["faithfulness"] is not None and p["faithfulness"] >= 0.8]
    if reached:
        assert (small["n_edges"], small["frac"]) == (reached[0]["n_edges"], reached[0]["frac"])
    else:
        assert small["n_edges"] is None and small["reason"]
    assert 0 <= m["seconds_baseline_and_curve"] <= m["seconds"]


def test_kl_percentage_only_under_the_kl_metric(tmp_path: Path, data: Path, capsys) -> None:
    assert run("--data", data, "--metric", "logit_diff", "--top_n", "30", "--out", tmp_path / "ld") == 0
    stdout = capsys.readouterr().out
    m = json.loads((tmp_path / "ld" / "metrics.json").read_text())
    assert not [k for k in m if k.startswith("kl_") and k != "kl_reduction"]
    assert "kl_recovered_pct" not in m["definitions"] and "KL recovered" not in m["summary"]
    assert "kl_recovered_pct=" not in stdout and "KL" not in stdout
    assert "logit of the answer minus" in m["definitions"]["metric"]


def test_no_warning_when_the_model_answers_every_row(tmp_path: Path, capsys) -> None:
    from circuitft.data.pairs import tokenize_pairs
    from circuitft.data.rows import PromptRow
    from circuitft.eap.accuracy import model_accuracy
    from circuitft.models.frozen import load_analysis_model

    loaded = load_analysis_model("tiny-gpt2")  # the model the command analyses
    prompts = [
        (f"{PREFIX}{a}+{b}=", f"{PREFIX}{a}+{c}=") for a, b, c in ((5, 9, 3), (7, 2, 8), (4, 4, 1), (6, 1, 9))
    ]
    probe = tokenize_pairs([PromptRow(c, k, "1") for c, k in prompts], loaded.tokenizer, "probe")
    said = model_accuracy(loaded.model, probe).first_prediction
    rows = [(c, k, loaded.tokenizer.decode([int(t)])) for (c, k), t in zip(prompts, said, strict=True)]
    own = tmp_path / "own.csv"
    own.write_text("clean,corrupted,answer\n" + "".join(",".join(r) + "\n" for r in rows))
    assert run("--data", own, "--top_n", "30", "--out", tmp_path / "o") == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["model_accuracy"] == 1.0 and m["warnings"] == []
    assert "warning:" not in capsys.readouterr().err and "answers 100% of the rows" in m["summary"]


def test_baseline_and_curve_options(tmp_path: Path, data: Path, capsys) -> None:
    assert (
        run("--data", data, "--baseline_samples", "0", "--size_curve", "false", "--out", tmp_path / "a") == 0
    )
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert not {"random_baseline", "size_curve", "smallest_80pct"} & set(m)
    assert "random circuit" not in m["summary"] and "random_baseline" not in m["definitions"]
    assert (
        run("--data", data, "--baseline_samples", "1", "--size_curve", "0.5,0.1", "--out", tmp_path / "b")
        == 0
    )
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert [p["frac"] for p in m["size_curve"]] == [0.1, 0.5] and m["random_baseline"]["n_samples"] == 1
    assert m["random_baseline"]["faithfulness_std"] == 0.0
    assert run("--data", data, "--top_n", "30", "--size_curve", "true", "--out", tmp_path / "c") == 0
    full = json.loads((tmp_path / "c" / "metrics.json").read_text())["size_curve"]
    assert [p["frac"] for p in full] == [0.005, 0.02, 0.05, 0.1, 0.2, 0.5] and not any(
        "main" in p for p in full
    )
    assert run("--data", data, "--top_n", "30", "--out", tmp_path / "d") == 0  # auto: one side of the main
    auto = json.loads((tmp_path / "d" / "metrics.json").read_text())["size_curve"]
    (main_point,) = [p for p in auto if p.get("main")]
    assert main_point["frac"] == 30 / 110 and len(auto) < len(full) + 1
    same = {p["frac"]: p["faithfulness"] for p in full}
    for p in auto:  # the points evaluated in both modes agree
        if not p.get("main"):
            assert p["faithfulness"] == pytest.approx(same[p["frac"]], abs=1e-6)
    capsys.readouterr()
    for bad, where in (
        (("--size_curve", "1.5"), "--size_curve"),
        (("--baseline_samples", "-1"), "--baseline_samples"),
    ):
        out = tmp_path / "bad"
        assert run("--data", data, *bad, "--out", out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and where in err[0] and not out.exists()
