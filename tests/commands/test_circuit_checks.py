"""``circuitft circuit``: --out checked before the model is loaded, user paths in errors, --graph as is,
--threshold, missing hub models, duplicated columns and identical clean/corrupted rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
ROWS = "clean,corrupted,answer,wrong\n1 + 2 =,1 + 5 =,3,6\n4 + 4 =,4 + 1 =,8,5\n2 + 3 =,2 + 6 =,5,8\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(ROWS)
    return path


def run(*args: str | Path) -> int:
    return main(["circuit", "--quiet", *map(str, args)])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and not any("Traceback" in x for x in err), err
    return err[-1]


def _no_model(monkeypatch):
    """Loading a model fails the test: the check must come first."""
    import circuitft.models as models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(models, "load_model", refuse)


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_out_fails_before_the_model_is_loaded(tmp_path, data, monkeypatch, capsys, where):
    _no_model(monkeypatch)
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:  # a read-only file system (even for root)
        out = Path("/proc/circuitft-test-out")
    assert run("--model", "tiny-gpt2", "--data", data, "--method", "EAP", "--out", out) == 2
    line = last_error(capsys)
    assert line.startswith(f"error: --out {out}: ") and ".tmp" not in line, line


def test_write_error_names_out_not_the_temporary_folder(tmp_path, data, monkeypatch, capsys):
    def failing_write_json(graph, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("circuitft.eap.io.write_json", failing_write_json)
    out = tmp_path / "out"
    assert run("--model", "tiny-gpt2", "--data", data, "--method", "EAP", "--out", out) == 2
    line = last_error(capsys)
    assert line.startswith(f"error: --out {out}: cannot write (Permission denied") and ".tmp" not in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_negative_threshold_is_refused(data, tmp_path, capsys):
    assert run("--model", "tiny-gpt2", "--data", data, "--threshold", "-1", "--out", tmp_path / "o") == 2
    assert "--threshold must be >= 0" in last_error(capsys)
    assert not (tmp_path / "o").exists()


def _graph(tmp_path: Path, data: Path, edges: int | None) -> Path:
    """A saved graph from EAP with ``edges`` circuit edges (None: its circuit emptied)."""
    first = tmp_path / "first"
    assert run("--model", "tiny-gpt2", "--data", data, "--method", "EAP", "--top_n", str(edges or 20),
               "--out", first) == 0  # fmt: skip
    path = first / "graph.json"
    if edges is None:
        doc = json.loads(path.read_text())
        for e in doc["edges"].values():
            e["in_graph"] = False
        path.write_text(json.dumps(doc))
    return path


def test_graph_with_an_empty_circuit_is_evaluated_as_empty(tmp_path, data, capsys):
    path = _graph(tmp_path, data, None)
    out = tmp_path / "again"
    assert run("--model", "tiny-gpt2", "--data", data, "--graph", path, "--out", out) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_edges"] == 0 and m["n_nodes"] == 0  # not a reselected top 5%
    assert m["circuit_metric"] == pytest.approx(m["corrupted_metric"], abs=1e-4)


def test_graph_node_count_comes_from_the_edges(tmp_path, data):
    path = _graph(tmp_path, data, 20)
    doc = json.loads(path.read_text())
    for node in doc["nodes"]:
        doc["nodes"][node] = True  # stale node flags: every node marked
    path.write_text(json.dumps(doc))
    out = tmp_path / "again"
    assert run("--model", "tiny-gpt2", "--data", data, "--graph", path, "--out", out) == 0
    m1 = json.loads((tmp_path / "first" / "metrics.json").read_text())
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["n_edges"] == m1["n_edges"] and m2["n_nodes"] == m1["n_nodes"]
    assert m2["n_nodes"] < len(doc["nodes"]) - 1


def test_missing_hub_model_fails_fast_without_hf_hub_offline(tmp_path, data):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = f"{REPO / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "circuitft", "circuit", "--model", "nobody/not-a-model", "--data", str(data),
         "--out", str(tmp_path / "o")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert r.returncode == 2 and seconds < 5, (seconds, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not in the local Hugging Face cache" in lines[0]
    assert "hf download nobody/not-a-model" in lines[0]


def test_duplicated_csv_column_is_refused(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("clean,corrupted,answer,answer\n1 + 2 =,1 + 5 =,3,4\n")
    assert run("--model", "tiny-gpt2", "--data", path, "--out", tmp_path / "o") == 2
    assert f"{path}: line 1: column 'answer' appears more than once" in last_error(capsys)


def test_identical_rows_are_dropped_and_counted(tmp_path, data, capsys):
    path = tmp_path / "same.csv"
    path.write_text(ROWS + "7 + 1 =,7 + 1 =,8,9\n")
    out = tmp_path / "o"
    assert run("--model", "tiny-gpt2", "--data", path, "--method", "EAP", "--out", out) == 0
    assert "1 for identical clean/corrupted tokens, 3 used" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_identical"] == 1 and m["n_examples"] == 3 and m["faithfulness"] is not None
    only = tmp_path / "only.csv"
    only.write_text("clean,corrupted,answer\n7 + 1 =,7 + 1 =,8\n3 + 1 =,3 + 1 =,4\n")
    assert run("--model", "tiny-gpt2", "--data", only, "--out", tmp_path / "o2") == 2
    assert "none of the 2 rows" in last_error(capsys) and not (tmp_path / "o2").exists()
