"""demo/walkthrough.py runs end to end on a tiny model, matches its notebook, and fails in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "demo" / "walkthrough.py"
NOTEBOOK = REPO / "demo" / "walkthrough.ipynb"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_walkthrough_runs_on_tiny_gpt2(tmp_path: Path) -> None:
    out = tmp_path / "wt"
    proc = _run(
        "--model", "tiny-gpt2", "--out", str(out), "--results", str(tmp_path / "r.json"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for expected in (
        "24 AddSub pairs",
        "untuned:",
        "tuned:",
        "edge Jaccard",
        "AddSub's circuit on AddSubInv",
    ):
        assert expected in text, text
    for name in ("circuit_untuned", "circuit_diff"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.svg").is_file()
    assert (out / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "run" / "data" / "AddSub" / "train.csv").is_file()  # the run kept its held-out rows
    _overlaps_agree(text)
    numbers = json.loads((tmp_path / "r.json").read_text())["numbers"]  # the printed numbers, as a file
    assert f"edge Jaccard {numbers['edge_jaccard']:.2f}" in text
    assert (
        f"tuned:   {numbers['edges']['tuned']} edges, faithfulness {numbers['tuned']['faithfulness']:.2f}"
        in text
    )


def _overlaps_agree(text: str) -> None:
    """The issue's case: "edge Jaccard 0.00" printed beside "edge change (top 5%) 0.20". The default circuit
    now has edges on tiny-gpt2, and each printed overlap follows from the counts printed with it."""
    untuned = re.search(r"untuned: (\d+) of (\d+) edges", text)
    assert untuned and int(untuned.group(1)) >= 1, text
    m = re.search(r"circuit edges: (\d+) untuned, (\d+) tuned, (\d+) shared \(edge Jaccard ([\d.]+)\)", text)
    assert m, text
    a, b, shared, jaccard = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    assert a == int(untuned.group(1)) and b >= 1
    assert jaccard == pytest.approx(shared / (a + b - shared), abs=0.005)
    top = re.search(r"\(k = (\d+)\): edge change ([\d.]+), Jaccard ([\d.]+)", text)
    assert top, text
    k, change, top_jaccard = int(top.group(1)), float(top.group(2)), float(top.group(3))
    kept = round((1 - change) * k)
    assert top_jaccard == pytest.approx(kept / (2 * k - kept), abs=0.005)


def test_notebook_is_the_script(tmp_path: Path) -> None:
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(NOTEBOOK)
    script = jupytext.read(SCRIPT)
    code = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert code(notebook) == code(script), "regenerate with: jupytext --sync demo/walkthrough.py"
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, "the committed notebook keeps the outputs of a real run"
    assert not any(o.get("output_type") == "error" for o in outputs)


@pytest.mark.parametrize("case", ["model", "out"])
def test_bad_input_is_one_line(tmp_path: Path, case: str) -> None:
    if case == "model":
        args, expect = ("--model", "no-such-model", "--out", str(tmp_path / "o")), "no-such-model"
    else:
        (tmp_path / "file").write_text("x")
        args, expect = ("--model", "tiny-gpt2", "--out", str(tmp_path / "file" / "o")), "cannot write"
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and expect in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1
