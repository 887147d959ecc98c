"""A run started from a shared prefix is the uninterrupted run: adapter weights, circuit graphs and records.

Tiny random GPT-2, configs/quick_pairs.yaml (every task analysed at every checkpoint, so the prefix also finds
the circuits of the tasks its runs train next). The shared sweep trains FloorDiv once for two runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from circuitft.analysis.runs import _read_val
from circuitft.commands import sweep
from circuitft.runfolder import RunFolder
from circuitft.sweeps.prefix import plan_sharing

REPO = Path(__file__).resolve().parents[2]
QUICK_PAIRS = REPO / "configs" / "quick_pairs.yaml"
RUNS = ["FloorDiv__Modulo", "FloorDiv__Abs"]
TIMING = {"seconds"}  # wall-clock measures differ from run to run


def _sweep(root: Path, *more: str) -> int:
    return sweep.main(
        "sweep", ["--config", str(QUICK_PAIRS), "--root_dir", str(root), "--only", *RUNS, *more]
    )


def _same(a, b, where: str = "") -> None:
    """Equal JSON values, numbers to 1e-6 (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if k not in TIMING:
                _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(shared: Path, alone: Path) -> None:
    """Records, circuit graphs (every tensor) and the final adapter weights agree to 1e-6."""
    a, b = RunFolder(shared), RunFolder(alone)
    ra, rb = a.record_log().read(), b.record_log().read()
    assert [(r["step"], r["task"]) for r in ra] == [(r["step"], r["task"]) for r in rb]
    _same(ra, rb, str(shared))
    _same(a.accuracy_log().read(), b.accuracy_log().read(), f"{shared} accuracy")
    for rec in rb:
        with (
            safe_open(str(a.circuits / rec["graph_path"]), "pt") as fa,
            safe_open(str(b.circuits / rec["graph_path"]), "pt") as fb,
        ):
            assert sorted(fa.keys()) == sorted(fb.keys())
            for key in fb.keys():
                ta, tb = fa.get_tensor(key), fb.get_tensor(key)
                assert ta.shape == tb.shape and torch.allclose(
                    ta.double(), tb.double(), atol=1e-6, equal_nan=True
                )
    va, vb = _read_val(a.root), _read_val(b.root)  # what the report reads from TensorBoard
    assert va[["step", "task"]].equals(vb[["step", "task"]]) and len(vb)
    assert ((va[["loss", "acc"]] - vb[["loss", "acc"]]).abs().fillna(0) <= 1e-6).all().all()
    wa = torch.load(a.checkpoints / "last.ckpt", weights_only=True)
    wb = torch.load(b.checkpoints / "last.ckpt", weights_only=True)
    assert wa["global_step"] == wb["global_step"] == 16
    assert wa["TaskStreamDataModule"] == wb["TaskStreamDataModule"]
    assert (
        max((wa["state_dict"][k] - wb["state_dict"][k]).abs().max().item() for k in wb["state_dict"]) <= 1e-6
    )


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("alone")
    assert _sweep(root, "--share_prefix", "false") == 0
    assert not (root / ".prefixes").exists()
    return root


def test_runs_from_a_shared_prefix_equal_uninterrupted_runs(alone, tmp_path, capsys):
    root = tmp_path / "shared"
    assert _sweep(root) == 0
    out = capsys.readouterr().out
    prefixes = sorted((root / ".prefixes").iterdir())
    assert [p.name.split("-")[0] for p in prefixes if p.is_dir()] == ["FloorDiv"]
    assert out.count(": training FloorDiv for 2 runs") == 1  # trained once
    assert out.count("new (from prefix FloorDiv-") == 2
    prefix = RunFolder(next(p for p in prefixes if p.is_dir()))
    assert {r["task"] for r in prefix.record_log().read()} == {"FloorDiv", "Modulo", "Abs"}  # every B, once
    assert prefix.is_done() and not (prefix.checkpoints / "step000016.ckpt").exists()
    for run in RUNS:
        assert_same_run(root / run, alone / run)
        assert RunFolder(root / run).is_done() and RunFolder(root / run).checkpoint_steps() == [0, 8, 16][1:]
    assert (
        sweep.main(
            "sweep", ["--config", str(QUICK_PAIRS), "--root_dir", str(root), "--only", *RUNS, "--dry_run"]
        )
        == 0
    )
    assert "stage trainings: 3 (1 shared), 4 without share_prefix" in capsys.readouterr().out


@pytest.mark.slow
def test_a_kill_inside_the_shared_prefix_then_the_sweep_again_equals_uninterrupted(tmp_path):
    """With a checkpoint every 4 steps, the prefix's fit is SIGKILLed at step 6 (its step-4 checkpoint
    survives); the sweep run again resumes the prefix, forks both runs and ends where the runs trained from
    scratch end."""
    text = QUICK_PAIRS.read_text().replace(
        "fit_config: quick.yaml", f"fit_config: {QUICK_PAIRS.parent / 'quick.yaml'}"
    )
    text = text.replace('--checkpoint.every_n_train_steps, "8"', '--checkpoint.every_n_train_steps, "4"')
    text = text.replace('--trainer.val_check_interval, "8"', '--trainer.val_check_interval, "4"')
    config = tmp_path / "pairs4.yaml"
    config.write_text(text)

    def run_sweep(root: Path, *more: str) -> int:
        return sweep.main("sweep", ["--config", str(config), "--root_dir", str(root), "--only", *RUNS, *more])

    alone, root = tmp_path / "alone", tmp_path / "killed"
    assert run_sweep(alone, "--share_prefix", "false") == 0
    fit_config, _, every = sweep.load_sweep(config)
    runs = [r for r in every if r.name in RUNS]
    prefix = plan_sharing(fit_config, runs, []).start[RUNS[0]]
    assert prefix is not None
    folder = prefix.folder(root)
    extra = prefix.write_config(root)
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(fit_config), *prefix.args, "--config", str(extra),
           "--trainer.default_root_dir", str(folder),
           "--trainer.callbacks+=tests.training.killer.KillAtStep", "--trainer.callbacks.step", "6"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == -9, r.stderr[-2000:]
    assert RunFolder(folder).state() == "resume" and RunFolder(folder).last_checkpoint_step() == 4
    assert run_sweep(root) == 0
    for run in RUNS:
        assert_same_run(root / run, alone / run)


def test_an_interrupted_fork_is_made_again(alone, tmp_path):
    """A fork killed before it wrote last.ckpt leaves a run that is forked again (its records rewritten)."""
    root = tmp_path / "forked"
    assert _sweep(root) == 0
    run = RunFolder(root / RUNS[0])
    for path in run.checkpoints.iterdir():
        path.unlink()
    (run.root / "DONE").unlink()
    run.record_log().write([{"step": 0, "task": "FloorDiv", "junk": True}])
    assert run.state() == "new"
    assert _sweep(root) == 0
    assert_same_run(root / RUNS[0], alone / RUNS[0])
    json.dumps(run.record_log().read())


@pytest.mark.slow
def test_quick_pairs_gives_the_same_pair_table_with_and_without_shared_prefixes(tmp_path):
    """The whole of configs/quick_pairs.yaml both ways, then `circuitft report`: every numeric column of
    pairs.csv (and of circuits.csv) agrees to 1e-6."""
    import pandas as pd

    from circuitft.cli import main

    tables = {}
    for share in ("true", "false"):
        root, out = tmp_path / f"share_{share}", tmp_path / f"report_{share}"
        assert (
            sweep.main(
                "sweep", ["--config", str(QUICK_PAIRS), "--root_dir", str(root), "--share_prefix", share]
            )
            == 0
        )
        assert (root / ".prefixes").exists() == (share == "true")
        assert main(["report", str(root), "--out", str(out), "--threshold", "0"]) == 0
        tables[share] = {name: pd.read_csv(out / "tables" / f"{name}.csv") for name in ("pairs", "circuits")}
    for name in ("pairs", "circuits"):
        a, b = tables["true"][name], tables["false"][name]
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        if name == "pairs":
            assert len(a) == 6
        numeric = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and c not in TIMING]
        assert numeric
        for c in numeric:
            x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
            both_nan = (x != x) & (y != y)
            assert ((abs(x - y) <= 1e-6) | both_nan).all(), f"{name}.csv column {c}: {x} != {y}"
        text = [c for c in a.columns if c not in numeric and c not in TIMING]
        assert a[text].astype(str).equals(b[text].astype(str))
