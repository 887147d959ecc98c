"""Hostile input, each case as a user found it: files circuitft did not write are never deleted or
overwritten, small files cannot make a command hang or allocate gigabytes, wrong types are one clear error.

Each bomb case asserts that the command refuses within a few seconds. The slow tests at the end repeat the two
data-loss cases with real runs, through the installed command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.synth import write_run
from circuitft.cli import main
from circuitft.errors import ConfigError
from circuitft.owned import MARKER, kind_of

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quick.yaml")
TASKS = [("A", 10), ("B", 10)]
ANALYSES = {0: {"A": (0.1, 0.1), "B": (0.2, 0.15)}, 10: {"A": (0.9, 0.8), "B": (0.3, 0.2)}}
USER_CONFIG = "# my own notes\nseed_everything: 3  # keep\n"


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str]:
    """Exit status and stderr of ``circuitft ARGS``; asserts the error, if any, is one line."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    if rc != 0:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in err, err
    return rc, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- data loss: report --out ------------------------------------------------------------------------------
def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    write_run(site / "myrun", TASKS, ANALYSES)
    (site / "index.html").write_text("<h1>my home page</h1>")
    (site / "notes.txt").write_text("my notes")
    return site


def test_report_out_holding_the_run_is_refused_and_nothing_is_deleted(tmp_path, capsys):
    site = _site(tmp_path)
    before = snapshot(site)
    rc, err = run_cli(capsys, "report", site / "myrun", "--out", site)
    assert rc == 2 and "holds the run" in err and "--out" in err
    assert snapshot(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temp folder


def test_report_out_equal_to_the_run_is_refused(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    before = snapshot(tmp_path)
    rc, err = run_cli(capsys, "report", tmp_path / "run", "--out", tmp_path / "run")
    assert rc == 2 and "is the run" in err
    assert snapshot(tmp_path) == before


def test_report_out_holding_a_run_of_a_sweep_folder_is_refused(tmp_path, capsys):
    write_run(tmp_path / "sweep" / "A__B", TASKS, ANALYSES)
    write_run(tmp_path / "sweep" / "B__A", TASKS, ANALYSES)
    before = snapshot(tmp_path)
    rc, err = run_cli(capsys, "report", tmp_path / "sweep", "--out", tmp_path / "sweep" / "A__B")
    assert rc == 2 and "is the run" in err
    assert snapshot(tmp_path) == before


def test_report_out_with_an_index_html_of_the_user_is_refused(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>mine</h1>")
    (site / "notes.txt").write_text("my notes")
    before = snapshot(site)
    rc, err = run_cli(capsys, "report", tmp_path / "run", "--out", site)
    assert rc == 2 and "holds no report written by circuitft" in err and "index.html" in err
    assert snapshot(site) == before


def test_report_replaces_only_its_own_report_and_refuses_a_run_folder(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    rep = tmp_path / "rep"
    assert run_cli(capsys, "report", tmp_path / "run", "--out", rep)[0] == 0
    assert kind_of(rep) == "report"
    assert run_cli(capsys, "report", tmp_path / "run", "--out", rep)[0] == 0  # its own report: replaced
    other = tmp_path / "other"
    write_run(other, TASKS, ANALYSES)
    (other / MARKER).write_text(json.dumps({"kind": "run"}))
    before = snapshot(other)
    rc, err = run_cli(capsys, "report", tmp_path / "run", "--out", other)
    assert rc == 2 and "is a circuitft run folder, not a report folder" in err
    assert snapshot(other) == before


# ---- data loss: fit's config.yaml -------------------------------------------------------------------------
def test_fit_into_a_folder_with_the_users_config_is_refused(tmp_path, capsys, monkeypatch):
    # as found: `cd exp && circuitft fit --config config.yaml --trainer.default_root_dir .`
    exp = tmp_path / "exp"
    exp.mkdir()
    mine = "# my experiment, hand-written\n" + Path(QUICK).read_text()
    (exp / "config.yaml").write_text(mine)
    monkeypatch.chdir(exp)
    rc, err = run_cli(capsys, "fit", "--config", "config.yaml", "--trainer.default_root_dir", ".")
    assert rc == 2 and "--trainer.default_root_dir ." in err and "holds no run written by circuitft" in err
    assert "config.yaml" in err
    assert sorted(p.name for p in exp.iterdir()) == ["config.yaml"]  # no lock, no marker, nothing else
    assert (exp / "config.yaml").read_text() == mine


def test_fit_takes_an_empty_folder_and_a_run_made_before_the_marker(tmp_path):
    from circuitft.owned import check_owned

    empty = tmp_path / "empty"
    empty.mkdir()
    check_owned(empty, "run", "--trainer.default_root_dir", what="write into")  # empty: fine
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (old / "config.yaml").write_text("x: 1\n")
    check_owned(old, "run", "--trainer.default_root_dir", what="write into")  # a run before the marker


# ---- data loss: circuit --out, export --out, sweep run folders -------------------------------------------
def test_circuit_out_with_the_users_files_is_refused_before_the_model_loads(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("clean,corrupted,answer,wrong\n1 + 2 =,1 + 5 =,3,6\n4 + 4 =,4 + 1 =,8,5\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    import circuitft.commands.circuit  # noqa: F401 - imports are not what is timed (slow on a loaded machine)
    import circuitft.eap.attribute  # noqa: F401

    t0 = time.perf_counter()
    rc, err = run_cli(capsys, "circuit", "--model", "tiny-gpt2", "--data", data, "--out", out)
    assert rc == 2 and "holds no circuit written by circuitft" in err and "metrics.json" in err
    assert time.perf_counter() - t0 < 10
    assert (out / "metrics.json").read_text() == '{"mine": 1}'


def test_sweep_run_folder_with_the_users_files_is_refused_before_any_run(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    root = tmp_path / "runs"
    (root / "A").mkdir(parents=True)
    (root / "A" / "config.yaml").write_text(USER_CONFIG)
    sweep.write_text(f"fit_config: {QUICK}\nroot_dir: {root}\nruns: [{{name: A}}, {{name: B}}]\n")
    rc, err = run_cli(capsys, "sweep", "--config", sweep, "--dry_run")
    assert rc == 2 and "run A:" in err and "config.yaml" in err
    assert (root / "A" / "config.yaml").read_text() == USER_CONFIG and not (root / "B").exists()


# ---- slow: the two data-loss cases end to end, with real files next to a real run -------------------------
def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "circuitft", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_data_loss_cases_end_to_end(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(USER_CONFIG)
    (exp / "notes.txt").write_text("my notes")
    tiny = ["--trainer.enable_progress_bar", "false"]
    # fit pointed at the user's folder: refused, the hand-written config untouched
    res = _cli("fit", "--config", QUICK, "--trainer.default_root_dir", ".", *tiny, cwd=exp)
    assert res.returncode == 2 and "config.yaml" in res.stderr and "Traceback" not in res.stderr
    assert (exp / "config.yaml").read_text() == USER_CONFIG
    # a real run next to the user's files, then a report whose --out holds it
    res = _cli("fit", "--config", QUICK, "--trainer.default_root_dir", "myrun", *tiny, cwd=exp)
    assert res.returncode == 0, res.stderr[-2000:]
    assert kind_of(exp / "myrun") == "run"
    before = snapshot(exp)
    res = _cli("report", "myrun", "--out", ".", cwd=exp)
    assert res.returncode == 2 and "holds the run" in res.stderr and "Traceback" not in res.stderr
    assert snapshot(exp) == before
    (exp / "index.html").write_text("<h1>mine</h1>")
    res = _cli("report", "myrun", "--out", "site", cwd=exp)  # a fresh folder: fine
    assert res.returncode == 0, res.stderr[-2000:]
    res = _cli("report", "myrun", "--out", ".", cwd=exp)
    assert res.returncode == 2 and (exp / "index.html").read_text() == "<h1>mine</h1>"
    assert (exp / "notes.txt").read_text() == "my notes" and (exp / "config.yaml").read_text() == USER_CONFIG
    # resuming the finished run keeps working (the run is circuitft's)
    res = _cli(
        "fit", "--config", QUICK, "--trainer.default_root_dir", "myrun", "--ckpt_path", "last", *tiny, cwd=exp
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_report_written_before_the_marker_is_still_replaced(tmp_path, capsys):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    rep = tmp_path / "rep"
    assert run_cli(capsys, "report", tmp_path / "run", "--out", rep)[0] == 0
    (rep / MARKER).unlink()  # as an older circuitft left it
    assert run_cli(capsys, "report", tmp_path / "run", "--out", rep)[0] == 0
    assert kind_of(rep) == "report"
    (rep / MARKER).unlink()
    (rep / "notes.txt").write_text("mine")  # the user's file in it: no longer only a report
    rc, err = run_cli(capsys, "report", tmp_path / "run", "--out", rep)
    assert rc == 2 and "notes.txt" in err and (rep / "notes.txt").read_text() == "mine"


def test_circuit_output_written_before_the_marker_is_still_written_into(tmp_path):
    from circuitft.owned import check_owned

    out = tmp_path / "o"
    out.mkdir()
    for name in ("graph.json", "graph.safetensors", "metrics.json"):
        (out / name).write_text("{}")
    check_owned(out, "circuit", "--out", what="write into")  # the three files circuit writes: its own
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        check_owned(out, "circuit", "--out", what="write into")
