"""``circuitft circuit``: held-out scores (--heldout_frac, --heldout_data), metric_gap, MIB's CPR/CMD and --mib."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from circuitft.cli import main
from circuitft.eap.io import load_graph
from circuitft.eap.mib import MIB_FRACTIONS

from .test_circuit import ROWS, write_csv

MORE = [  # rows that are not in ROWS
    ("17+25=", "17+64=", "42", "81"),
    ("66-14=", "66-39=", "52", "27"),
    ("28+51=", "28+30=", "79", "58"),
]
HELD = (
    "faithfulness_heldout",
    "kl_recovered_pct_heldout",
    "circuit_accuracy_heldout",
    "model_accuracy_heldout",
)


def run(*args: str | Path) -> int:
    return main(["circuit", "--quiet", *map(str, args)])


def common(data: Path) -> tuple:
    return ("--model", "tiny-gpt2", "--data", data, "--ig_steps", "2", "--batch_size", "4", "--top_n", "30")


def test_heldout_frac_finds_on_the_first_rows_and_scores_on_the_last(tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "addsub.csv", ROWS + MORE)
    out = tmp_path / "out"
    assert run(*common(data), "--heldout_frac", "0.34", "--baseline_samples", "0", "--out", out) == 0
    err = capsys.readouterr().err
    assert "held out: the last 3 of 9 rows" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_examples"] == 6 and m["n_examples_heldout"] == 3
    for key in HELD:
        assert isinstance(m[key], float), key
    assert m["metric_gap"] == pytest.approx(abs(m["clean_metric"] - m["corrupted_metric"]))
    assert m["metric_gap_heldout"] > 0
    assert "held-out (n=3 rows, fewer than 20" in m["summary"]

    # the same circuit found on the 6 discovery rows alone scores the same in-sample
    alone = tmp_path / "alone"
    disc = write_csv(tmp_path / "disc.csv", ROWS)
    assert run(*common(disc), "--baseline_samples", "0", "--out", alone) == 0
    a = json.loads((alone / "metrics.json").read_text())
    assert a["faithfulness"] == pytest.approx(m["faithfulness"], abs=1e-5)
    assert a["n_examples_heldout"] == 0 and a["faithfulness_heldout"] is None
    # ... and scoring it on the held-out rows as its --data gives the held-out numbers
    g = tmp_path / "held_only"
    held = write_csv(tmp_path / "held.csv", MORE)
    assert main(["circuit", "--quiet", "--model", "tiny-gpt2", "--data", str(held), "--graph",
                 str(alone / "graph.safetensors"), "--baseline_samples", "0", "--size_curve", "false",
                 "--out", str(g)]) == 0  # fmt: skip
    h = json.loads((g / "metrics.json").read_text())
    assert h["faithfulness"] == pytest.approx(m["faithfulness_heldout"], abs=1e-5)
    assert h["model_accuracy"] == pytest.approx(m["model_accuracy_heldout"])


def test_heldout_data_drops_rows_that_are_discovery_rows(tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "addsub.csv")
    held = write_csv(tmp_path / "held.csv", MORE + ROWS[:2])  # two rows shared with --data
    out = tmp_path / "out"
    assert run(*common(data), "--heldout_data", held, "--baseline_samples", "0", "--out", out) == 0
    assert "3 held-out rows (2 dropped: their clean prompt is in" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_examples"] == 6 and m["n_examples_heldout"] == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--heldout_frac", "1.5"), "--heldout_frac must be between 0 and 1"),
        (("--heldout_frac", "0.5", "--heldout_data", "x.csv"), "heldout_data"),
    ],
)
def test_bad_heldout_options(tmp_path: Path, capsys, extra, message) -> None:
    data = write_csv(tmp_path / "addsub.csv")
    out = tmp_path / "out"
    assert run(*common(data), *extra, "--out", out) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_heldout_data_sharing_every_row_is_refused(tmp_path: Path, capsys) -> None:
    data = write_csv(tmp_path / "addsub.csv")
    out = tmp_path / "out"
    assert run(*common(data), "--heldout_data", data, "--out", out) == 2
    assert "no usable row outside --data" in capsys.readouterr().err and not out.exists()


def test_mib_writes_circuits_at_mib_fractions_and_cpr_cmd_from_the_curve(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "addsub.csv")
    out = tmp_path / "out"
    assert run(*common(data), "--mib", "--baseline_samples", "0", "--out", out) == 0
    m = json.loads((out / "metrics.json").read_text())
    # the tiny graph (110 edges) maps 0.1% ... 1% to one edge: the curve evaluates each circuit once
    total = m["n_edges_total"]
    curve = {max(1, int(p["frac"] * total)): p["faithfulness"] for p in m["size_curve"]}
    assert len(curve) == len({max(1, int(f * total)) for f in MIB_FRACTIONS})
    # the trapezoid rule by hand over MIB's fractions (linear x)
    xs, ys = list(MIB_FRACTIONS), [curve[max(1, int(x * total))] for x in MIB_FRACTIONS]
    cpr = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(9))
    cmd = sum((xs[i + 1] - xs[i]) * (abs(1 - ys[i]) + abs(1 - ys[i + 1])) / 2 for i in range(9))
    assert m["cpr"] == pytest.approx(cpr) and m["cmd"] == pytest.approx(cmd)
    assert "MIB: CPR" in m["summary"]
    folder = out / "mib" / "addsub_tiny-gpt2"
    names = sorted(p.name for p in folder.iterdir())
    assert "importances.json" in names and len(names) == 10
    scores = load_graph(folder / "importances.json")
    for frac in MIB_FRACTIONS[:-1]:
        g = load_graph(folder / f"edges_{100 * frac:g}pct.json")
        assert int(g.in_graph.sum()) <= max(1, int(frac * g.n_edges))
        assert torch.equal(g.scores, scores.scores)
    assert not math.isnan(m["cpr"])
