"""``circuitft circuit`` end to end on tiny models, in-process through ``circuitft.cli.main``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from circuitft.cli import main
from circuitft.eap.graph import GraphConfig
from circuitft.eap.io import load_graph

PREFIX = "Solve the following and respond with only the final answer: "
ROWS = [  # clean, corrupted, answer, wrong (digits are one token each in the tiny tokenizer)
    ("59+63=", "59+15=", "122", "74"),
    ("72-61=", "72-69=", "11", "3"),
    ("48+71=", "48+55=", "119", "103"),
    ("85-23=", "85-47=", "62", "38"),
    ("31+24=", "31+52=", "55", "83"),
    ("90-45=", "90-18=", "45", "72"),
]
KEYS = (
    "faithfulness", "kl_recovered_pct", "clean_metric", "corrupted_metric", "circuit_metric", "n_edges",
    "n_nodes", "model_accuracy", "circuit_accuracy", "method", "metric", "ig_steps", "n_examples",
    "n_dropped", "seconds",
)  # fmt: skip


def write_csv(
    path: Path, rows: list[tuple[str, ...]] = ROWS, header: str = "clean,corrupted,answer,wrong"
) -> Path:
    lines = [header] + [",".join([PREFIX + x if i < 2 else x for i, x in enumerate(r)]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "addsub.csv")


def run(*args: str | Path) -> int:
    return main(["circuit", "--quiet", *map(str, args)])


def test_writes_graph_and_metrics(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    common = ("--model", "tiny-gpt2", "--data", data, "--method", "EAP-IG-inputs", "--ig_steps", "2")
    assert run(*common, "--batch_size", "4", "--top_n", "30", "--seed", "1", "--out", out) == 0
    captured = capsys.readouterr()
    assert "6 rows, 0 dropped" in captured.err and "n_edges=" in captured.out
    assert sorted(p.name for p in out.iterdir() if p.name != ".circuitft") == [
        "graph.json",
        "graph.safetensors",
        "metrics.json",
    ]

    metrics = json.loads((out / "metrics.json").read_text())
    for key in KEYS:
        assert key in metrics, key
    assert metrics["method"] == "EAP-IG-inputs" and metrics["ig_steps"] == 2 and metrics["n_examples"] == 6
    assert 0 < metrics["n_edges"] <= 30 and metrics["n_edges_total"] == 110  # tiny-gpt2: 2 layers x 4 heads
    assert 0 <= metrics["model_accuracy"] <= 1 and metrics["clean_metric"] == 0.0  # KL of clean vs itself

    doc = json.loads((out / "graph.json").read_text())
    assert len(doc["edges"]) == 110  # every edge, in or out of the circuit
    assert sum(e["in_graph"] for e in doc["edges"].values()) == metrics["n_edges"]
    assert doc["meta"]["method"] == "EAP-IG-inputs" and doc["meta"]["seed"] == 1
    cfg = GraphConfig(2, 4, d_model=32)
    g_json, g_st = load_graph(out / "graph.json", cfg), load_graph(out / "graph.safetensors", cfg)
    assert torch.equal(g_json.scores, g_st.scores) and torch.equal(g_json.in_graph, g_st.in_graph)
    assert g_json.scores.abs().sum() > 0 and g_json.count_nodes() == metrics["n_nodes"]
    # the circuit is the pruned top 30 by |score|: every circuit edge ranks among the top 30
    top30 = g_json.edge_scores().abs().sort(descending=True).values[29]
    assert (g_json.scores[g_json.in_graph].abs() >= top30).all()

    # a second run into the existing folder replaces our three files and keeps the others
    (out / "notes.txt").write_text("mine")
    assert (
        run("--model", "tiny-gpt2", "--data", data, "--method", "EAP", "--metric", "logprob", "--out", out)
        == 0
    )
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["method"] == "EAP"
    assert not torch.allclose(load_graph(out / "graph.safetensors").scores, g_st.scores)


def test_gqa_model_default_size_and_adapter(tmp_path: Path, data: Path, tiny) -> None:
    from peft import LoraConfig, get_peft_model

    base = tiny("tiny-llama").model
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    outs = {}
    for name, extra in (("base", ()), ("lora", ("--adapter", tmp_path / "adapter"))):
        outs[name] = tmp_path / name
        args = (
            "--model",
            "tiny-llama",
            *extra,
            "--data",
            data,
            "--method",
            "EAP-IG-inputs",
            "--ig_steps",
            "2",
        )
        assert run(*args, "--out", outs[name]) == 0
    g = load_graph(outs["base"] / "graph.safetensors")
    assert g.cfg.grouped and "input->a0.g1<k>" in g.cfg.edge_names
    metrics = json.loads((outs["base"] / "metrics.json").read_text())
    selection = metrics["selection"]
    if selection["option"] == "top_frac":
        assert selection["value"] == 0.05 and metrics["n_edges"] <= int(0.05 * g.n_edges) == 4
    else:  # the top 5% prunes to nothing on this random model: the smallest size that keeps a circuit
        assert selection["option"] == "top_n" and selection["default_top_frac"] == 0.05
        assert selection["value"] > int(0.05 * g.n_edges) == 4
    assert metrics["n_edges"] >= 1
    lora_scores = load_graph(outs["lora"] / "graph.safetensors").scores
    scale = g.scores.abs().max()
    assert (lora_scores - g.scores).abs().max() > 1e-3 * scale  # the adapter was merged in
    assert json.loads((outs["lora"] / "metrics.json").read_text())["adapter"] == str(tmp_path / "adapter")


def test_ckpt_and_adapter_give_the_same_circuit(tmp_path: Path, data: Path, tiny) -> None:
    from circuitft.models.lora import wrap_lora

    peft_model = wrap_lora(tiny("tiny-gpt2").model, r=2, alpha=4.0, dropout=0.0)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in trainable.values():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    hp = {"model": "tiny-gpt2", "model_seed": 0, "lora_r": 2, "lora_alpha": 4.0, "target_modules": "auto"}
    state = {f"model.{n}": p.detach().clone() for n, p in trainable.items()}
    torch.save({"hyper_parameters": hp, "state_dict": state}, tmp_path / "last.ckpt")
    peft_model.save_pretrained(tmp_path / "adapter")
    common = ("--data", data, "--method", "EAP", "--metric", "logprob", "--top_n", "20")
    assert run("--ckpt", tmp_path / "last.ckpt", *common, "--out", tmp_path / "a") == 0
    assert (
        run("--model", "tiny-gpt2", "--adapter", tmp_path / "adapter", *common, "--out", tmp_path / "b") == 0
    )
    assert run("--model", "tiny-gpt2", *common, "--out", tmp_path / "c") == 0
    a, b, c = (load_graph(tmp_path / x / "graph.safetensors") for x in "abc")
    assert torch.allclose(a.scores, b.scores, rtol=1e-4, atol=1e-7) and torch.equal(a.in_graph, b.in_graph)
    assert not torch.allclose(a.scores, c.scores, rtol=1e-2)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["model"] == "tiny-gpt2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "EAP-XL"), "unknown attribution method 'EAP-XL'; valid methods: EAP, EAP-IG-inputs"),
        (("--method", "EAP", "--metric", "bleu"), "unknown metric 'bleu'; valid metrics: kl"),
        (("--method", "EAP", "--top_n", "0"), "top_n must be a positive integer, got 0"),
        (("--method", "EAP", "--top_n", "100000"), "top_n 100000 exceeds the 110 edges"),
        (("--method", "EAP", "--top_frac", "1.5"), r"top_frac must be in \(0, 1\], got 1.5"),
        (
            ("--method", "EAP", "--top_n", "5", "--top_frac", "0.1"),
            "give only one of --top_n, --top_frac, --threshold, --greedy_n; got --top_n and --top_frac",
        ),
        (
            ("--method", "EAP", "--adapter", "NOADAPTER", "--ckpt", "NOCKPT"),
            "give only one of --adapter, --ckpt; got --adapter and --ckpt",
        ),
        (("--method", "EAP", "--prepend_bos", "maybe"), "expected true or false"),
        (("--method", "EAP", "--ig_steps", "0"), "--ig_steps must be at least 1"),
        (("--method", "EAP", "--metric", "logit_diff", "--data", "NOWRONG"), "wrong"),
        (("--method", "EAP", "--data", "MISSING"), "missing.csv: file not found"),
        (("--method", "EAP", "--data", "MISMATCH", "--on_mismatch", "error"), "row 2: clean and corrupted"),
        (("--method", "EAP", "--data", "NOCORRUPTED"), "corrupted"),
        (("--method", "EAP", "--adapter", "NOADAPTER"), "not a peft adapter folder"),
        (("--method", "EAP", "--ckpt", "NOCKPT"), "file not found"),
        (("--model", "no-such-model", "--method", "EAP"), "no-such-model"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture, args: tuple[str, ...], message: str
) -> None:
    files = {
        "MISSING": tmp_path / "missing.csv",
        "MISMATCH": write_csv(tmp_path / "mm.csv", [ROWS[0], ("1+1=", "11+1=", "2", "3")]),
        "NOCORRUPTED": write_csv(tmp_path / "nc.csv", [("1+1=",)], header="clean"),
        "NOWRONG": write_csv(tmp_path / "nw.csv", [r[:3] for r in ROWS], header="clean,corrupted,answer"),
        "NOADAPTER": tmp_path,
        "NOCKPT": tmp_path / "none.ckpt",
    }
    args = tuple(str(files.get(a, a)) for a in args)
    if "--data" not in args:
        args += ("--data", str(data))
    if "--model" not in args:
        args += ("--model", "tiny-gpt2")
    out = tmp_path / "out"
    assert run(*args, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert re.search(message, err[-1]), err[-1]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_help(capsys: pytest.CaptureFixture) -> None:
    assert main(["circuit", "--help"]) == 0
    assert "--top_frac" in capsys.readouterr().out


def test_graph_option_re_evaluates_a_saved_graph(tmp_path: Path, data: Path) -> None:
    first = tmp_path / "first"
    assert (
        run(
            "--model",
            "tiny-gpt2",
            "--data",
            data,
            "--method",
            "EAP-IG-inputs",
            "--top_n",
            "30",
            "--out",
            first,
        )
        == 0
    )
    again = tmp_path / "again"
    assert run("--model", "tiny-gpt2", "--data", data, "--graph", first / "graph.json", "--out", again) == 0
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (first, again))
    for key in ("n_edges", "n_nodes", "faithfulness", "circuit_accuracy", "kl_recovered_pct"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-5), key
    # the saved graph's selection (top 30) sizes the random circuits: the same seeded samples again
    assert m2["random_baseline"]["n_edges_sampled"] == 30
    assert m1["random_baseline"]["faithfulness"] == pytest.approx(
        m2["random_baseline"]["faithfulness"], abs=1e-6
    )
    assert m2["method"] == "EAP-IG-inputs" and m2["graph"].endswith("graph.json")
    smaller = tmp_path / "smaller"
    assert run("--model", "tiny-gpt2", "--data", data, "--graph", first / "graph.safetensors", "--top_n", "10",
               "--out", smaller) == 0  # fmt: skip
    assert json.loads((smaller / "metrics.json").read_text())["n_edges"] <= 10


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("other_model", (), r"does not (fit|match)|first|edge"),
        ("corrupt", (), r"broken\.json"),
        ("ok", ("--method", "EAP"), "not both"),
    ],
)
def test_graph_option_bad_input(tmp_path: Path, data: Path, capsys, make, extra, message) -> None:
    path = tmp_path / "broken.json"
    if make == "corrupt":
        path.write_text('{"cfg": {"n_layers": 2,')
    elif make in ("other_model", "ok"):
        model = "tiny-llama" if make == "other_model" else "tiny-gpt2"
        assert run("--model", model, "--data", data, "--method", "EAP", "--out", tmp_path / "g") == 0
        path = tmp_path / "g" / "graph.json"
    args = ("--graph", path) if make else ()
    out = tmp_path / "out"
    assert run("--model", "tiny-gpt2", "--data", data, *args, *extra, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and re.search(message, err), err
    assert not out.exists()


def test_accuracy_option_is_recorded_and_checked(tmp_path: Path, data: Path, capsys) -> None:
    common = (
        "--model",
        "tiny-gpt2",
        "--data",
        data,
        "--method",
        "EAP",
        "--metric",
        "logprob",
        "--top_n",
        "20",
    )
    assert run(*common, "--accuracy", "first_token", "--out", tmp_path / "a") == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["accuracy"] == "first_token"
    assert run(*common, "--accuracy", "top5", "--out", tmp_path / "b") == 2
    assert "--accuracy" in capsys.readouterr().err and not (tmp_path / "b").exists()
