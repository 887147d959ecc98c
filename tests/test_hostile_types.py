"""Hostile input, types and messages: every field of a graph file, a run's config and the Python API is
type-checked at the boundary (one CircuitftError each, never a raw TypeError/ValueError or a silently
wrong reading), and messages name the thing (the model cache, a truncated checkpoint's size)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis.synth import CFG, write_run
from circuitft.cli import main
from circuitft.eap.graph import Graph
from circuitft.eap.io import load_graph, save_graph
from circuitft.errors import CircuitftError, DataError

REPO = Path(__file__).resolve().parents[1]


def graph_json(tmp_path: Path) -> tuple[Path, dict]:
    """A valid graph file of the synthetic shape (every edge listed) and its parsed content."""
    g = Graph(CFG)
    g.scores[CFG.real_edge_mask] = torch.linspace(-1, 1, int(CFG.real_edge_mask.sum()))
    g.in_graph[:] = False
    path = tmp_path / "g.json"
    save_graph(g, path)
    return path, json.loads(path.read_text())


def rewrite(path: Path, d: dict) -> Path:
    path.write_text(json.dumps(d))
    return path


# ---- graph JSON fields -------------------------------------------------------------------------------------
def test_in_graph_as_a_string_is_refused_not_read_as_true(tmp_path):
    path, d = graph_json(tmp_path)
    first = next(iter(d["edges"]))
    d["edges"][first]["in_graph"] = "false"
    with pytest.raises(DataError, match=rf"edge '{first}': in_graph must be true or false, got 'false'"):
        load_graph(rewrite(path, d))


def test_node_fields_are_type_checked(tmp_path):
    path, d = graph_json(tmp_path)
    node = next(iter(d["nodes"]))
    d["nodes"][node] = {"in_graph": True, "score": "abc"}
    with pytest.raises(DataError, match="score must be a number, got 'abc'"):
        load_graph(rewrite(path, d))
    d["nodes"][node] = {"in_graph": 1}
    with pytest.raises(DataError, match="in_graph must be true or false, got 1"):
        load_graph(rewrite(path, d))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores_are_refused(tmp_path, value):
    path, d = graph_json(tmp_path)
    first = next(iter(d["edges"]))
    text = json.dumps(d).replace(
        f'"{first}": {{"score": {d["edges"][first]["score"]}', f'"{first}": {{"score": {value}', 1
    )
    path.write_text(text)
    with pytest.raises(DataError, match="score must be a finite number"):
        load_graph(path)


def test_deep_nesting_is_one_data_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"cfg": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(DataError, match="nested too deeply"):
        load_graph(path)


def test_a_valid_reference_file_with_only_some_edges_is_still_read(tmp_path):
    path, d = graph_json(tmp_path)
    keep = dict(list(d["edges"].items())[:3])
    keep[next(iter(keep))]["score"] = None  # null scores read as 0, as before
    d["edges"] = keep
    g = load_graph(rewrite(path, d))
    assert g.count_edges() == 0 and float(g.scores.abs().sum()) > 0


def test_safetensors_with_non_finite_scores_is_refused(tmp_path):
    g = Graph(CFG)
    g.scores[0, 1] = math.nan
    save_graph(g, tmp_path / "g.safetensors")
    with pytest.raises(DataError, match="1 of .* edge scores are not finite"):
        load_graph(tmp_path / "g.safetensors")


# ---- report: non-finite scores and a run's config ----------------------------------------------------------
TASKS = [("A", 10), ("B", 10)]
ANALYSES = {0: {"A": (0.1, 0.1), "B": (0.2, 0.15)}, 10: {"A": (0.9, 0.8), "B": (0.3, 0.2)}}


def report_error(capsys, run: Path, out: Path) -> str:
    rc = main(["report", str(run), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


def test_report_refuses_a_run_graph_with_nan_scores(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    graph = sorted((tmp_path / "run" / "circuits").rglob("*.safetensors"))[-1]
    g = load_graph(graph)
    g.scores[g.cfg.real_edge_mask] = math.nan
    save_graph(g, graph)
    err = report_error(capsys, tmp_path / "run", tmp_path / "rep")
    assert graph.name in err and "not finite" in err


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda c: c["data"]["tasks"][0].update(steps="abc"),
            r"data\.tasks\[0\]\.steps must be a positive integer, got 'abc'",
        ),
        (lambda c: c["data"].update(tasks="A"), r"data\.tasks must be a list"),
        (lambda c: c.update(model=["x"]), r"model must be a mapping"),
    ],
)
def test_report_validates_the_run_config(tmp_path, capsys, edit, match):
    import re

    import yaml

    write_run(tmp_path / "run", TASKS, ANALYSES)
    path = tmp_path / "run" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))
    err = report_error(capsys, tmp_path / "run", tmp_path / "rep")
    assert "config.yaml" in err and re.search(match, err), err


# ---- the Python API: wrong types are CircuitftErrors --------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    import circuitft as cf

    return cf.load("tiny-gpt2", progress=False)


def test_api_argument_types(model):
    import circuitft as cf

    g = Graph.from_model(model.model)
    cases = [
        (lambda: cf.load(123), "model must be a string or a path or None, got int"),
        (lambda: cf.find_circuit(model, "abc"), "pairs must be PromptPairs, got str"),
        (lambda: cf.find_circuit(123, "abc"), "expected a model"),
        (lambda: cf.compare(g, 5), "b must be Graph, got int"),
        (lambda: cf.compare(g, g, frac=math.nan), r"frac must be a fraction in \(0, 1\], got nan"),
        (lambda: cf.draw(None), "circuit must be Graph, got NoneType"),
        (lambda: cf.make_pairs("Add", model, n="3"), "n must be an integer"),
        (lambda: cf.evaluate_circuit(model, None, None), "circuit must be Graph"),
        (lambda: cf.load_graph(123), "path must be a string or a path, got int"),
        (lambda: cf.save_graph(None, "x.json"), "graph must be Graph"),
    ]
    for call, match in cases:
        with pytest.raises(CircuitftError, match=match):
            call()


def test_api_bounds_and_fractions(model):
    import circuitft as cf

    pairs = cf.make_pairs("Add", model, n=2, seed=0)
    with pytest.raises(CircuitftError, match=r"top_frac must be a fraction in \(0, 1\], got nan"):
        cf.find_circuit(model, pairs, top_frac=math.nan)
    with pytest.raises(CircuitftError, match="ig_steps must be at most 1,000"):
        cf.find_circuit(model, pairs, ig_steps=10**6)


# ---- messages that name the thing ------------------------------------------------------------------------
def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "circuitft", *args],
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_unusable_cache_names_the_model_cache_and_the_variable(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("clean,corrupted,answer,wrong\n1 + 2 =,1 + 5 =,3,6\n4 + 4 =,4 + 1 =,8,5\n")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    args = ["circuit", "--model", "tiny-gpt2", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet"]
    res = _run(*args, env={"CIRCUITFT_CACHE": str(a_file)})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "model cache folder" in res.stderr and f"CIRCUITFT_CACHE={a_file}" in res.stderr
    env = {k: v for k, v in os.environ.items() if k != "CIRCUITFT_CACHE"}
    res = subprocess.run(
        [sys.executable, "-m", "circuitft", *args],
        env={**env, "HOME": "/proc/nohome", "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert (
        "model cache folder /proc/nohome/.cache/circuitft" in res.stderr
        and "set CIRCUITFT_CACHE" in res.stderr
    )


def _checkpoint(folder: Path, name: str) -> Path:
    from circuitft.owned import mark
    from circuitft.training.checkpoint_io import AtomicCheckpointIO

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder.parent / ".circuitft").exists():
        mark(folder.parent, "run")
    path = folder / name
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.randn(5000)}, "global_step": 3}, path)
    return path


def test_a_truncated_checkpoint_says_so_with_its_sizes(tmp_path):
    from circuitft.models.checkpoint import load_checkpoint_file

    ckpts = tmp_path / "run" / "checkpoints"
    good = _checkpoint(ckpts, "step000001.ckpt")
    cut = _checkpoint(ckpts, "last.ckpt")
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[: size // 2])
    with pytest.raises(CircuitftError) as err:
        load_checkpoint_file(cut)
    msg = str(err.value)
    assert f"truncated or incomplete ({size // 2:,} of {size:,} bytes)" in msg and "\n" not in msg
    assert "readable checkpoints beside it: step000001.ckpt" in msg and good.name in msg


def test_the_checkpoint_hint_names_only_neighbours_that_load(tmp_path):
    import argparse

    from circuitft.models.checkpoint import load_checkpoint_file

    ckpts = tmp_path / "run" / "checkpoints"
    pickled = ckpts / "step000001.ckpt"  # a complete archive (its zip directory intact) that does not load
    ckpts.mkdir(parents=True)
    torch.save({"args": argparse.Namespace(a=1)}, pickled)
    cut = _checkpoint(ckpts, "last.ckpt")
    cut.write_bytes(cut.read_bytes()[:100])
    with pytest.raises(CircuitftError) as err:
        load_checkpoint_file(cut)
    assert "no readable checkpoint beside it" in str(err.value)


def test_a_graph_file_with_a_byte_order_mark_is_read(tmp_path):
    path, d = graph_json(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows editors save UTF-8
    assert load_graph(path).n_edges == Graph(CFG).n_edges


def test_a_deeply_nested_jsonl_row_is_one_data_error(tmp_path):
    from circuitft.data.sources import load_rows

    path = tmp_path / "d.jsonl"
    path.write_text('{"clean": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"line 1: JSON nested too deeply"):
        load_rows(path)


def test_a_deeply_nested_metrics_record_is_one_line_in_report(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    log.write_text(log.read_text() + "[" * 100_000 + "]" * 100_000 + "\n")
    err = report_error(capsys, tmp_path / "run", tmp_path / "rep")
    assert "metrics.jsonl: line" in err and "nested too deeply" in err


def test_numpy_numbers_are_valid_api_arguments(model):
    import numpy as np

    import circuitft as cf

    pairs = cf.make_pairs("Add", model, n=np.int64(2), seed=np.int32(0))
    assert len(pairs) == 2
    g = Graph.from_model(model.model)
    assert "edge_jaccard" in str(cf.compare(g, g, frac=np.float32(0.5)))
