"""`circuitft fit|validate`: quick.yaml end to end, run-folder layout, one-line errors, resume, DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICK = str(REPO / "configs" / "quick.yaml")


def fit(root: Path, *extra: str) -> int:
    return main(["fit", "--config", QUICK, "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quick")
    assert fit(root) == 0
    return root


def test_quick_yaml_writes_everything_under_the_run_folder(quick_run):
    names = sorted(p.name for p in (quick_run / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step000003.ckpt", "step000006.ckpt", "step000009.ckpt", "step000012.ckpt"]
    assert (quick_run / "config.yaml").is_file() and (quick_run / "hparams.yaml").is_file()
    assert list(quick_run.glob("events.out.tfevents.*"))
    ckpt = torch.load(quick_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 12 and ckpt["TaskStreamDataModule"]["task_idx"] == 1
    assert all(".lora_" in k for k in ckpt["state_dict"])


def test_validate_from_checkpoint(quick_run, capsys):
    ckpt = str(quick_run / "checkpoints" / "last.ckpt")
    config = (quick_run / "config.yaml").read_text()
    rc = main(["validate", "--config", QUICK, "--trainer.default_root_dir", str(quick_run),
               "--trainer.enable_progress_bar", "false", "--ckpt_path", ckpt])  # fmt: skip
    assert rc == 0
    assert "val/AddSubInv/acc" in capsys.readouterr().out
    assert (quick_run / "config.yaml").read_text() == config  # validate leaves the run's config alone


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--config", "missing.yaml"], "config file missing.yaml does not exist"),
        (["--config", QUICK, "--model.bogus", "1"], "bogus"),
        (["--config", QUICK, "--data.tasks", '[{"task": "Nope", "steps": 2}]'], "unknown task 'Nope'"),
        (["--config", QUICK, "--data.tasks", '[{"task": "AddSub", "steps": 0}]'], "steps must be positive"),
        (["--config", QUICK, "--model.model", "no-such-model"], "unknown model spec"),
        (["--config", QUICK, "--trainer.val_check_interval", "50"], "val_check_interval (50)"),
        (["--config", QUICK, "--trainer.callbacks.sizes=[0.05,1.5]"], "CircuitCallback sizes: each size is"),
        (
            ["--config", QUICK, "--trainer.callbacks.cross_task=[AddSub,Nope]"],
            "cross_task ['Nope'] are not in",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, expect):
    root = tmp_path / "run"
    rc = main(["fit", *args, "--trainer.default_root_dir", str(root)])
    assert rc == 2
    assert expect in _one_error_line(capsys)
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_malformed_and_unknown_keys_in_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lr: [1\n")
    assert main(["fit", "--config", str(bad)]) == 2
    assert "malformed YAML" in _one_error_line(capsys)
    bad.write_text("modle:\n  lr: 1\n")
    assert main(["fit", "--config", str(bad)]) == 2
    assert "modle" in _one_error_line(capsys)


def test_checkpoint_of_another_adapter_is_refused_before_anything_is_written(quick_run, capsys):
    config = (quick_run / "config.yaml").read_text()
    rc = fit(quick_run, "--model.lora_r", "8", "--ckpt_path", "last")
    assert rc == 2
    assert "lora_r=4 (config: 8)" in _one_error_line(capsys)
    assert (quick_run / "config.yaml").read_text() == config


def test_print_config(capsys):
    assert main(["fit", "--config", QUICK, "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "default_root_dir: runs/quick" in out and "task: AddSub" in out


def _subprocess_fit(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", QUICK, "--trainer.default_root_dir", str(root),
           "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _raw_scalars(root: Path) -> list[tuple[str, int, float]]:
    """Every scalar event as TensorBoard shows it (events purged by a resume's ``purge_step`` are gone)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(root), size_guidance={"scalars": 0}).Reload()
    return [(t, e.step, e.value) for t in acc.Tags()["scalars"] for e in acc.Scalars(t)]


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert _subprocess_fit(whole).returncode == 0
    r = _subprocess_fit(crashed, "--trainer.callbacks+=tests.training.killer.KillAtStep",
                        "--trainer.callbacks.step", "8")  # fmt: skip
    assert r.returncode == -9, r.stderr[-2000:]  # SIGKILL: no cleanup, last.ckpt is from step 6
    r = _subprocess_fit(crashed, "--ckpt_path", "last")  # resumes into the same folder (config overwritten)
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    sa, sb = _raw_scalars(whole), _raw_scalars(crashed)
    keys = lambda s: sorted((t, st) for t, st, _ in s)  # noqa: E731
    assert keys(sb) == keys(sa)  # same logged steps, none twice
    own = [k for k in keys(sb) if k[0] != "epoch"]  # Lightning itself logs `epoch` twice at validation steps
    assert len(set(own)) == len(own)
    va, vb = dict(((t, st), v) for t, st, v in sa), dict(((t, st), v) for t, st, v in sb)
    timing = ("circuit/seconds", "circuit/time_share")  # wall-clock measures differ from run to run
    same = lambda x, y: abs(x - y) < 1e-4 or (math.isnan(x) and math.isnan(y))  # noqa: E731 (forgetting: NaN)
    assert all(same(va[k], vb[k]) for k in va if k[0] not in timing)


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_on_cpu(tmp_path):
    root = tmp_path / "ddp"
    r = _subprocess_fit(root, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 12
    assert ckpt["TaskStreamDataModule"]["tasks"] == ["AddSub", "AddSubInv"]


def test_fresh_fit_into_a_finished_run_folder_is_refused(quick_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()}
    assert fit(quick_run, "--model.lr", "5e-3") == 2
    line = _one_error_line(capsys)
    assert "already holds a run" in line and "--ckpt_path last" in line
    after = {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing touched


def test_parser_errors_keep_their_cause(tmp_path, capsys):
    assert fit(tmp_path / "r", "--model.lr", "abc") == 2
    assert "Got value: abc" in _one_error_line(capsys)
    tasks = '[{"source": "x.csv", "name": "X", "steps": 2}]'
    assert fit(tmp_path / "r", "--data.tasks", tasks) == 2
    assert "data.tasks[0] (X): give `task`" in _one_error_line(capsys)


def test_resume_with_another_stream_is_refused_before_anything_is_written(quick_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()}
    tasks = '[{"task": "AddSub", "steps": 6, "n_train": 32, "n_val": 8}]'
    assert fit(quick_run, "--ckpt_path", "last", "--data.tasks", tasks) == 2
    assert "was made for the task stream ['AddSub', 'AddSubInv']" in _one_error_line(capsys)
    assert {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()} == before


def test_resuming_a_finished_run_changes_nothing(quick_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars() -> dict[str, list[int]]:
        acc = EventAccumulator(str(quick_run)).Reload()
        return {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}

    records = (quick_run / "circuits" / "metrics.jsonl").read_text()
    before = scalars()
    assert fit(quick_run, "--ckpt_path", "last") == 0
    assert scalars() == before  # no step logged twice, none dropped
    assert (quick_run / "circuits" / "metrics.jsonl").read_text() == records


def test_run_keeps_the_rows_it_used_and_tasks_make_writes_them(quick_run, capsys):
    from circuitft.data.splits import split_of

    files = sorted(str(p.relative_to(quick_run)) for p in (quick_run / "data").rglob("*.csv"))
    assert files == [f"data/{t}/{s}.csv" for t in ("AddSub", "AddSubInv") for s in ("test", "train", "val")]
    for split, n in (("train", 32), ("val", 8), ("test", 8)):
        kept = (quick_run / "data" / "AddSubInv" / f"{split}.csv").read_text()
        assert len(kept.splitlines()) == n + 1
        assert all(split_of(line.split(",")[0]) == split for line in kept.splitlines()[1:])
        capsys.readouterr()
        args = [
            "tasks",
            "make",
            "AddSubInv",
            "--split",
            split,
            "--n",
            str(n),
            "--seed",
            "1",
            "--model",
            "tiny-gpt2",
        ]
        assert main([*args, "--param", "lo=0", "hi=19"]) == 0  # AddSubInv is task 1: seed 0 + 1
        assert capsys.readouterr().out == kept


def test_resume_with_changed_rows_is_refused_naming_the_file(quick_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()}
    tasks = (
        '[{"task": "AddSub", "steps": 6, "n_train": 32, "n_val": 7, "params": {"lo": 0, "hi": 19}},'
        ' {"task": "AddSubInv", "steps": 6, "n_train": 32, "n_val": 8, "params": {"lo": 0, "hi": 19}}]'
    )
    assert fit(quick_run, "--ckpt_path", "last", "--data.tasks", tasks) == 2
    line = _one_error_line(capsys)
    assert str(quick_run / "data" / "AddSub" / "val.csv") in line and "differ" in line
    assert {p: p.stat().st_mtime_ns for p in quick_run.rglob("*") if p.is_file()} == before


def test_test_command_evaluates_the_test_split(quick_run, capsys):
    ckpt = str(quick_run / "checkpoints" / "last.ckpt")
    rc = main(["test", "--config", QUICK, "--trainer.default_root_dir", str(quick_run),
               "--trainer.enable_progress_bar", "false", "--ckpt_path", ckpt])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr()
    assert "test/AddSub/acc" in out.out
    # 8 test rows per task: each accuracy is flagged
    assert "warning: test accuracy of AddSub (" in out.err and "rests on 8 rows (< 20)" in out.err


def test_mixed_stage_run_resumes(tmp_path):
    tasks = '[{"task": null, "mix": ["Add", "Sub"], "steps": 4, "n_train": 16, "n_val": 4, "params": {"lo": 0, "hi": 19}}]'
    args = [
        "--data.tasks",
        tasks,
        "--trainer.val_check_interval",
        "2",
        "--checkpoint.every_n_train_steps",
        "2",
    ]
    assert fit(tmp_path, *args, "--trainer.max_steps", "2") == 0
    assert fit(tmp_path, *args, "--ckpt_path", "last") == 0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["TaskStreamDataModule"]["tasks"] == ["Add+Sub"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["Add", "Sub"]


def test_cli_class_is_module_level_and_its_private_lightning_override_still_exists():
    """CircuitftCLI overrides LightningCLI._parse_ckpt_path (private: Lightning's version silently replaces the
    model config by the checkpoint's, with no public switch). A Lightning that renames or stops calling it
    must fail here, not bring the silent replacement back."""
    import inspect

    from lightning.pytorch.cli import LightningCLI

    from circuitft.commands.fit_cli import CircuitftCLI

    assert (
        CircuitftCLI.__qualname__ == "CircuitftCLI"
        and CircuitftCLI.__module__ == "circuitft.commands.fit_cli"
    )
    assert "_parse_ckpt_path" in vars(CircuitftCLI)
    assert callable(vars(LightningCLI).get("_parse_ckpt_path")), "LightningCLI._parse_ckpt_path is gone"
    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__), "no longer called"
    assert list(inspect.signature(LightningCLI._parse_ckpt_path).parameters) == ["self"]
