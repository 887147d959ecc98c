"""The explorer in headless Chromium (slow): on a tiny `fit` run's report page, a SmolLM2-sized run's, the demo
run's (when `make demo` has made runs/demo) and in TensorBoard's Circuits tab.

Checks what a user sees against the graph files themselves (read with safetensors alone): the edges drawn for
the size asked, a hovered edge's name and score, compare mode's kept/gained/lost counts, the Jaccard and its
chance level; no console error. Prints the time to first picture and to redraw (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from analysis.synth import write_run
from circuitft.analysis.runs import read_run
from circuitft.cli import main as cli_main
from circuitft.eap.graph import GraphConfig
from circuitft.explorer.pack import shipped_count
from circuitft.explorer.page import write_explorers
from explorer.cdp import Chromium, chromium_path
from explorer.test_board import start_tensorboard

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run (configs/quick.yaml: tiny GPT-2, AddSub then AddSubInv) and its report, made once."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get)")
    root = tmp_path_factory.mktemp("explorer")
    buffer = io.StringIO()
    old = Path.cwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            status = cli_main(
                ["fit", "--config", str(REPO / "configs" / "quick.yaml"), "--trainer.default_root_dir", "run"]
            )
            assert status == 0, buffer.getvalue()[-3000:]
            assert cli_main(["report", "run", "--out", "report"]) == 0, buffer.getvalue()[-3000:]
    finally:
        os.chdir(old)
    return root


# the screen point of drawn edge r, after scrolling the window so that it is inside the viewport
IN_VIEW = (
    "(r) => { const cx = document.getElementById('explorer').__explorer; const [, y] = cx.edgeScreenPoint(r);"
    " window.scrollBy(0, y - innerHeight / 2); return cx.edgeScreenPoint(r); }"
)


def records(run: Path) -> dict[tuple[str, int], Path]:
    out = {}
    for line in (run / "circuits" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if not rec.get("error"):
            out[(rec["task"], rec["step"])] = run / "circuits" / rec["graph_path"]
    return out


def file_edges(path: Path) -> tuple[list[str], np.ndarray]:
    """Every edge's name and score, strongest first (stable sort on -|score|), from the file alone."""
    with safe_open(str(path), framework="np") as f:
        cfg = GraphConfig.from_dict(json.loads(f.metadata()["cfg"]))
    scores = load_file(str(path))["edge_scores"]
    order = np.argsort(-np.abs(scores), kind="stable")
    return [cfg.edge_names[i] for i in order], scores[order]


def chance(n_items: int, a: int, b: int) -> float:
    """E[Jaccard] of two random subsets of sizes a and b of n_items, exactly (hypergeometric overlap)."""
    total = Fraction(0)
    for k in range(max(1, a + b - n_items), min(a, b) + 1):
        p = Fraction(math.comb(a, k) * math.comb(n_items - a, b - k), math.comb(n_items, b))
        total += p * Fraction(k, a + b - k)
    return float(total)


SET_SIZE = """(n => { const s = document.querySelector('.cx-size-n'); s.value = n;
  s.dispatchEvent(new Event('change')); return Number(s.value); })"""
SLIDE = """(p => { const s = document.querySelector('.cx-size'); s.value = p; const t = performance.now();
  s.dispatchEvent(new Event('input')); return [Number(document.querySelector('.cx-size-n').value),
  DRAWN, performance.now() - t]; })"""
PICK = """((cls, value) => { const s = document.querySelector(cls); s.value = String(value);
  s.dispatchEvent(new Event('change')); })"""
DRAWN = "Number(document.getElementById('explorer').getAttribute('data-drawn'))"
SLIDE = SLIDE.replace("DRAWN", DRAWN)
TABLE = "document.getElementById('explorer').__explorer.tableText().split('\\n').slice(1).map(r => r.split('\\t'))"


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run shaped like the embedded SmolLM2 (30 layers, 9 heads, 3 kv groups: 70,651 edges; random scores,
    2 tasks x 3 analyses) and its explorer page."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get)")
    root = tmp_path_factory.mktemp("explorer-smol")
    cfg = GraphConfig(n_layers=30, n_heads=9, n_kv_heads=3, d_model=576)
    analyses = {s: {"AddSub": (0.5, 0.4), "AddSubInv": (0.3, 0.2)} for s in (0, 40, 80)}
    write_run(root / "run", [("AddSub", 40), ("AddSubInv", 40)], analyses, cfg=cfg)
    (root / "report").mkdir()
    write_explorers([read_run(root / "run")], root / "report")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run's files (runs/demo of the checkout, from `make demo`) and an explorer page of them."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get)")
    if not (REPO / "runs" / "demo" / "circuits" / "metrics.jsonl").is_file():
        pytest.skip("no demo run in runs/demo (make demo makes it)")
    root = tmp_path_factory.mktemp("explorer-demo")
    (root / "run").symlink_to(REPO / "runs" / "demo")
    (root / "report").mkdir()
    write_explorers([read_run(root / "run")], root / "report")
    return root


@pytest.mark.parametrize("folder", ["quick", "smol", "demo"])
def test_explorer_page(folder, request, capsys):
    root = request.getfixturevalue(folder)
    recs = records(root / "run")
    tasks = list(dict.fromkeys(t for t, _ in recs))
    last = max(s for t, s in recs if t == tasks[0])
    with Chromium() as browser:
        page = browser.open((root / "report" / "explorer.html").as_uri())
        first_ms = float(
            page.wait("document.getElementById('explorer').getAttribute('data-first-picture-ms')")
        )
        # on load: the last analysed step of the first task, its edge table filled
        assert page.eval("document.querySelector('.cx-task').value") == tasks[0]
        assert page.eval("Number(document.querySelector('.cx-step').value)") == last
        names, scores = file_edges(recs[(tasks[0], last)])
        n0 = page.eval("Number(document.querySelector('.cx-size-n').value)")
        assert page.eval("document.querySelectorAll('.cx-table tbody tr').length") == min(n0, 500) > 0
        n_circuit = int(load_file(str(recs[(tasks[0], last)]))["edge_in_graph"].sum())
        shipped = shipped_count(len(names))
        assert n0 == (
            n_circuit if 0 < n_circuit <= shipped else round(0.05 * len(names))
        )  # the run's circuit size
        # the slider: the number of edges drawn is the number asked for, and they are the file's strongest
        redraws = []
        for position in (0, 250, 500, 750, 1000):
            asked, drawn, ms = page.eval(f"{SLIDE}({position})")
            redraws.append(ms)
            assert drawn == asked and 1 <= asked <= len(names)
        assert asked == shipped_count(len(names))  # the far end: every edge the page holds
        for n in (1, 7, 40):
            assert page.eval(f"{SET_SIZE}({n})") == n
            assert page.eval(DRAWN) == n
            assert [r[1] for r in page.eval(TABLE)] == names[:n]
        # hover: the mouse at the middle of the strongest edge shows its name and score
        # (scrolled into view first: on a tall graph such as SmolLM2's the edge can lie below the window)
        x, y = page.eval(f"({IN_VIEW})(0)")
        page.hover(x, y)
        tip = page.wait(
            "!document.querySelector('.cx-tooltip').hidden && document.querySelector('.cx-tooltip').textContent"
        )
        shown_name, shown_score = tip.split("\n")[0], float(tip.split("\n")[1].split()[1])
        assert shown_name == names[0]
        assert shown_score == pytest.approx(float(scores[0]), rel=1e-5)
        # ... and at the middle of the weakest drawn edge, whichever edge shows has the file's score
        point = page.eval(
            "(() => { const cx = document.getElementById('explorer').__explorer; for (let r = 39; r > 0; r--) {"
            f" const [x, y] = ({IN_VIEW})(r); if (!document.elementFromPoint(x, y).hasAttribute('data-n'))"
            " return [x, y]; } })()"
        )  # fmt: skip  (a point on no node: a node shows its own tooltip)
        page.hover(*point)
        tip = page.wait("document.querySelector('.cx-tooltip').textContent.split('\\n')[0] !== "
                        f"{json.dumps(names[0])} && document.querySelector('.cx-tooltip').textContent")  # fmt: skip
        shown_name, shown_score = tip.split("\n")[0], float(tip.split("\n")[1].split()[1])
        assert shown_name in names[:40]
        assert shown_score == pytest.approx(float(scores[names.index(shown_name)]), rel=1e-5)
        # click a node: only its in- and out-edges remain
        node = page.eval("document.querySelector('.cx-node.on:not(.focus)').getAttribute('data-n')")
        page.eval(
            f"document.querySelector('.cx-node[data-n=\"{node}\"]').dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
        )
        node_name = page.eval(
            "document.querySelector('.cx-node.focus') && document.querySelector('.cx-caption').textContent.split('at node ')[1]"
        )
        rows = page.eval(TABLE)
        assert rows and all(
            r[1].split("->")[0] == node_name or r[1].split("->")[1].split("<")[0] == node_name for r in rows
        )
        page.eval("document.querySelector('.cx-clear').click()")
        # search a node by name
        page.eval(
            "(() => { const s = document.querySelector('.cx-search'); s.value = 'm0'; s.dispatchEvent(new Event('change')); })()"
        )
        assert page.eval("document.querySelector('.cx-caption').textContent").endswith("at node m0")
        page.eval("document.querySelector('.cx-clear').click()")
        # sortable table: by score, largest first
        page.eval("document.querySelector('.cx-table th[data-k=score]').click()")
        shown = [float(r[2]) for r in page.eval(TABLE)]
        assert shown == sorted(shown, reverse=True)
        # compare: two tasks at one step, then two steps of one task
        n = 40
        page.eval(f"{SET_SIZE}({n})")
        page.eval("document.querySelector('.cx-compare').click()")
        for task_b, step_b in ((tasks[1], last), (tasks[0], 0)):
            page.eval(f"{PICK}('.cx-task-b', {json.dumps(task_b)})")
            page.eval(f"{PICK}('.cx-step-b', {step_b})")
            page.wait(f"document.querySelector('.cx-legend').textContent.includes('{task_b} @ {step_b}')")
            a = set(names[:n])
            b = set(file_edges(recs[(task_b, step_b)])[0][:n])
            got = {
                k: page.eval(f"Number(document.querySelector('.cx-{k}').textContent)")
                for k in ("kept", "gained", "lost")
            }
            assert got == {"kept": len(a & b), "gained": len(b - a), "lost": len(a - b)}
            assert page.eval(DRAWN) == len(a | b)
            jac = float(page.eval("document.querySelector('.cx-jaccard').textContent"))
            assert jac == pytest.approx(len(a & b) / len(a | b), abs=5e-5)
            level = float(page.eval("document.querySelector('.cx-chance').textContent"))
            assert level == pytest.approx(chance(len(names), n, n), abs=5e-5)
        assert page.errors == []
    with capsys.disabled():
        print(
            f"\nexplorer on the {folder} run ({len(names)} edges): first picture {first_ms:.0f} ms after navigation start; "
            f"redraw after a slider move {min(redraws):.1f}-{max(redraws):.1f} ms (n={len(redraws)})"
        )


def test_tensorboard_tab(quick, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick / "run", run)
    recs = records(run)
    tasks = list(dict.fromkeys(t for t, _ in recs))
    last = max(s for t, s in recs if t == tasks[0])
    proc, url = start_tensorboard(run)
    try:
        with Chromium() as browser:
            page = browser.open(url + "/#circuits")
            frame = "document.querySelector('iframe')"
            drawn = page.wait(f"{frame} && {frame}.contentDocument && "
                              f"Number({frame}.contentDocument.getElementById('explorer').getAttribute('data-drawn'))", timeout=120)  # fmt: skip
            doc = f"{frame}.contentDocument"
            assert page.eval(f"{doc}.querySelector('.cx-task').value") == tasks[0]
            assert page.eval(f"Number({doc}.querySelector('.cx-step').value)") == last
            assert drawn == page.eval(f"Number({doc}.querySelector('.cx-size-n').value)")
            assert page.eval(f"{doc}.querySelectorAll('.cx-table tbody tr').length") == drawn
            # the run goes on: a new analysis appears in the step picker (the tab looks every 30 s; now here)
            lines = (run / "circuits" / "metrics.jsonl").read_text().splitlines()
            rec = next(json.loads(x) for x in reversed(lines) if json.loads(x)["task"] == tasks[0])
            new = last + 100
            shutil.copytree(
                run / "circuits" / Path(rec["graph_path"]).parent, run / "circuits" / f"step{new:06d}"
            )
            rec.update(step=new, graph_path=f"step{new:06d}/{Path(rec['graph_path']).name}")
            (run / "circuits" / "metrics.jsonl").write_text("\n".join([*lines, json.dumps(rec)]) + "\n")
            page.eval(f"{frame}.contentWindow.circuitsRefresh()")
            steps = page.eval(f"[...{doc}.querySelectorAll('.cx-step option')].map(o => Number(o.value))")
            assert steps[-1] == new and page.eval(f"Number({doc}.querySelector('.cx-step').value)") == last
            assert page.errors == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)
