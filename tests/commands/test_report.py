"""`circuitft report`: files, numbers on the page, bad input; real runs end to end and a browser (slow)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.synth import top_names, write_run
from analysis.test_sweep import PAIRS, expected, make_sweep
from circuitft.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
TASKS = [("A", 10), ("B", 10)]
ANALYSES = {
    0: {"A": (0.1, 0.1), "B": (0.2, 0.15)},
    10: {"A": (0.9, 0.8), "B": (0.3, 0.2)},
    20: {"A": (0.5, 0.45), "B": (0.95, 0.9)},
}


def report(capsys, *args) -> tuple[int, str, str]:
    rc = cli_main(["report", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return rc, out, err


def images(index: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_single_run_report(tmp_path, capsys):
    graphs = write_run(
        tmp_path / "run", TASKS, ANALYSES, size_curve={(20, "A"): {0.01: 0.2, 0.1: 0.7, 1.0: 1.0}}
    )
    rc, out, err = report(capsys, tmp_path / "run", "--out", tmp_path / "rep")
    assert rc == 0, err
    rep = tmp_path / "rep"
    index = rep / "index.html"
    assert "report: 1 runs" in out
    for src in images(index):
        assert (rep / src).is_file() and (rep / src).with_suffix(".svg").is_file()
    names = {Path(s).stem for s in images(index)}
    for kind in (
        "accuracy",
        "faithfulness",
        "kl_recovered",
        "change",
        "change_first_last",
        "matrix_model_accuracy",
        "overlap_edges",
        "overlap_nodes",
        "size_curve",
        "diagram_A",
        "diff_A",
    ):
        assert f"run_{kind}" in names, kind
    assert "http" not in index.read_text().replace("http-equiv", "")  # nothing from the network
    circuits = pd.read_csv(rep / "tables" / "circuits.csv")
    assert len(circuits) == 6 and set(circuits.columns) >= {"run", "step", "task", "edge_change_prev"}
    # BWT on the page: R[B][A] - R[A][A] = 0.5 - 0.9 (divisor T-1 = 1); FWT: R[A][B] - b_B = 0.3 - 0.2
    row = re.search(
        r'id="continual-summary">.*?<td>run</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>'
        r"<td>([^<]+)</td>",
        index.read_text(),
        re.S,
    )
    acc, bwt, fwt, forget = row.groups()
    assert acc == f"{(0.5 + 0.95) / 2:.3f}" and bwt == f"{0.5 - 0.9:.3f}" and fwt == f"{0.3 - 0.2:.3f}"
    assert forget == f"{0.9 - 0.5:.3f}"
    matrix = pd.read_csv(rep / "tables" / "accuracy_matrix.csv")
    cell = matrix[(matrix.metric == "circuit_accuracy") & (matrix["after"] == "B") & (matrix.task == "A")]
    assert cell["value"].iloc[0] == 0.45
    ov = pd.read_csv(rep / "tables" / "overlap.csv")
    ta, tb = top_names(graphs[(20, "A")]), top_names(graphs[(20, "B")])
    got = ov[(ov.A == "A") & (ov.B == "B")]["edge_jaccard"].iloc[0]
    assert got == pytest.approx(len(ta & tb) / len(ta | tb))
    assert not (rep / "tables" / "pairs.csv").exists()  # one run is not a sweep
    # a second report replaces the first in place
    rc, _, _ = report(capsys, tmp_path / "run", "--out", rep, "--max_run_sections", "0")
    assert rc == 0 and not images(index)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "run"]  # no temp folders left


def test_sweep_report_numbers(tmp_path, capsys):
    graphs = make_sweep(tmp_path / "sweep")
    rc, _, err = report(capsys, tmp_path / "sweep", "--out", tmp_path / "rep", "--max_run_sections", "0")
    assert rc == 0, err
    rep = tmp_path / "rep"
    pairs = pd.read_csv(rep / "tables" / "pairs.csv")
    assert len(pairs) == 6
    assert {"A", "B", "jaccard", "circuit_forgetting_rel", "forgetting_rel", "included"} <= set(pairs.columns)
    fit = json.loads((rep / "fit.json").read_text())
    inc = [e for e in expected(graphs) if e["included"]]
    x, y = np.array([e["jaccard"] for e in inc]), np.array([e["fc"] for e in inc])
    r = np.corrcoef(x, y)[0, 1]
    h = fit["circuit_rel"]
    assert (
        h["r"] == pytest.approx(r) and h["r2"] == pytest.approx(r * r) and h["n"] == 5 and h["left_out"] == 1
    )
    for key in ("slope", "intercept"):
        assert key in h and key in fit["model_rel"] and key in fit["loss"]
    page = (rep / "index.html").read_text()
    row = re.search(
        r'<tr id="fit-circuit_rel"><td></td><td>circuit_rel</td><td>[^<]+</td><td>(\d+) \(3 / 3\)</td>'
        r"<td>([^ <]+) \[[^<]+\]</td>(?:<td>[^<]*</td>){5}<td>(\d+)</td>",
        page,
    )
    assert row.groups() == ("5", f"{r:.2f}", "1")
    stems = {Path(s).stem for s in images(rep / "index.html")}
    assert {"sweep_headline", "sweep_model_rel", "sweep_loss", "sweep_forgetting_model"} <= stems
    assert "Per-run figures are drawn for the first 0 of 6 runs" in page
    assert len(PAIRS) == 6


def test_too_few_pairs_skip_the_fit_with_a_note(tmp_path, capsys):
    make_sweep(tmp_path / "sweep", {k: PAIRS[k] for k in list(PAIRS)[:2]})
    rc, _, err = report(capsys, tmp_path / "sweep", "--out", tmp_path / "rep", "--max_run_sections", "0")
    assert rc == 0, err
    fit = json.loads((tmp_path / "rep" / "fit.json").read_text())
    assert fit["headline"]["r"] is None and fit["headline"]["n"] == 2
    assert (
        "fit skipped: fewer than 3 usable points (2 usable pairs, at least 3 needed)"
        in (tmp_path / "rep" / "index.html").read_text()
    )


def test_two_models_warn_and_get_separate_panels(tmp_path, capsys):
    three = {k: PAIRS[k] for k in list(PAIRS)[:3]}
    make_sweep(tmp_path / "sweep" / "gpt2", three)
    make_sweep(tmp_path / "sweep2", three, model="tiny-llama")
    rc, _, err = report(capsys, tmp_path / "sweep" / "gpt2", tmp_path / "sweep2", "--out", tmp_path / "rep",
                        "--max_run_sections", "0")  # fmt: skip
    assert rc == 0
    assert "warning: runs of 2 different models (tiny-gpt2, tiny-llama)" in err
    stems = {Path(s).stem for s in images(tmp_path / "rep" / "index.html")}
    assert {"sweep_headline_tiny-gpt2", "sweep_headline_tiny-llama"} <= stems
    fit = json.loads((tmp_path / "rep" / "fit.json").read_text())
    assert set(fit["by_model"]) == {"tiny-gpt2", "tiny-llama"}


def _bad_graph(tmp_path: Path) -> Path:
    write_run(tmp_path / "run", TASKS, ANALYSES)
    bad = tmp_path / "run" / "circuits" / "step000010" / "B.safetensors"
    bad.write_bytes(b"not a safetensors file")
    return bad


def _bad_line(tmp_path: Path) -> Path:
    write_run(tmp_path / "run", TASKS, ANALYSES)
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    lines[2] = lines[2][:40]
    log.write_text("\n".join(lines) + "\n")
    return log


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda t: (t / "run").mkdir(), r"run: an empty folder"),
        (lambda t: ((t / "run").mkdir(), (t / "run" / "x.txt").write_text("x")), r"run: not a run folder"),
        (_bad_graph, r"B\.safetensors: not a readable safetensors file"),
        (_bad_line, r"metrics\.jsonl: line 3: not valid JSON"),
    ],
)
def test_bad_input_one_line_nothing_written(tmp_path, capsys, setup, match):
    setup(tmp_path)
    rc, out, err = report(capsys, tmp_path / "run", "--out", tmp_path / "rep")
    assert rc == 2
    assert re.search(match, err) and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no report, no temp folder


def test_unusable_out(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    (tmp_path / "file").write_text("x")
    rc, _, err = report(capsys, tmp_path / "run", "--out", tmp_path / "file" / "rep")
    assert rc == 2 and "cannot create its parent folder" in err
    rc, _, err = report(capsys, tmp_path / "run", "--out", tmp_path / "file")
    assert rc == 2 and "exists and is not a folder" in err
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("x")
    rc, _, err = report(capsys, tmp_path / "run", "--out", tmp_path / "data")
    assert rc == 2 and "holds no report" in err and (tmp_path / "data" / "keep.csv").read_text() == "x"
    import os

    if os.geteuid() != 0:  # root may write anywhere: no read-only folder to test with
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rc, _, err = report(capsys, tmp_path / "run", "--out", ro / "rep")
            assert rc == 2 and "not writable" in err
        finally:
            ro.chmod(0o700)


# ---- real runs and a browser (slow) ---------------------------------------------------------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "circuitft", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_quick_yaml_and_quick_pairs_end_to_end(tmp_path):
    res = _cli("fit", "--config", str(REPO / "configs" / "quick.yaml"), "--trainer.default_root_dir",
               str(tmp_path / "quick"), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    res = _cli("report", str(tmp_path / "quick"), "--out", str(tmp_path / "quick_report"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    circuits = pd.read_csv(tmp_path / "quick_report" / "tables" / "circuits.csv")
    records = [
        json.loads(x) for x in (tmp_path / "quick" / "circuits" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(circuits) == len(records)
    rec = records[-1]
    row = circuits[(circuits.step == rec["step"]) & (circuits.task == rec["task"])].iloc[0]
    assert row["kl_recovered_pct"] == pytest.approx(rec["metrics"]["kl_recovered_pct"])
    # the pair sweep, in a copy of configs/ whose root_dir points into tmp_path
    cfgs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfgs)
    sweep_file = cfgs / "quick_pairs.yaml"
    text = sweep_file.read_text().replace("root_dir: runs/quick_pairs", f"root_dir: {tmp_path / 'qp'}")
    # the config analyses every task at each checkpoint (tasks: all): B's circuit at the end of A
    assert "init_args.tasks, all" in text
    sweep_file.write_text(text)
    res = _cli("sweep", "--config", str(sweep_file), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = _cli(
        "report", str(tmp_path / "qp"), "--out", str(tmp_path / "qp_report"), "--threshold", "0", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    pairs = pd.read_csv(tmp_path / "qp_report" / "tables" / "pairs.csv")
    assert len(pairs) == 6 and pairs["jaccard"].between(0, 1).all()
    fit = json.loads((tmp_path / "qp_report" / "fit.json").read_text())
    assert fit["headline"]["n"] + fit["headline"]["left_out"] == 6
    # the prospective overlap: A's and B's circuits both at the end of A, recomputed from the graph files
    from circuitft.eap.io import read_safetensors

    assert pairs["jaccard_prospective"].notna().all()
    for _, row in pairs.iterrows():
        folder = tmp_path / "qp" / row["run"] / "circuits" / f"step{int(row['end_A']):06d}"
        ga, gb = (read_safetensors(folder / f"{t}.safetensors") for t in (row["A"], row["B"]))
        ta, tb = top_names(ga), top_names(gb)
        assert row["jaccard_prospective"] == pytest.approx(len(ta & tb) / len(ta | tb))
    assert fit["prospective"]["n"] + fit["prospective"]["left_out"] == 6 and "verdict" in fit["prospective"]


@pytest.mark.slow
def test_browser_loads_every_image(tmp_path, capsys):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get)")
    write_run(tmp_path / "run", TASKS, ANALYSES)
    make_sweep(tmp_path / "sweep")
    rc, _, _ = report(capsys, tmp_path / "run", tmp_path / "sweep", "--out", tmp_path / "rep")
    assert rc == 0
    index = tmp_path / "rep" / "index.html"
    n_images = len(images(index))
    # a page script writes how many images loaded into the title; chromium dumps the DOM after load
    probe = tmp_path / "rep" / "probe.html"
    probe.write_text(
        index.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
            " document.title = 'loaded ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length"
            " + ' of ' + imgs.length; });</script></body>",
        )
    )
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    title = re.search(r"<title>([^<]*)</title>", res.stdout)
    assert title is not None, res.stderr[-2000:]
    assert title.group(1) == f"loaded {n_images} of {n_images}" and n_images > 10
