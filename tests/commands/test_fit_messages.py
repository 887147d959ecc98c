"""What `circuitft fit` prints: progress bars, per-analysis lines, summary, resume/fresh/interrupt lines, no
framework noise; and TensorBoard steps that agree (train, validation, circuits)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from circuitft.cli import main
from circuitft.commands import fit_messages

REPO = Path(__file__).resolve().parents[2]
TASK = {"steps": 2, "n_train": 8, "n_val": 4, "params": {"lo": 0, "hi": 9}}
SMALL = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "val_check_interval": 2,
        "callbacks": [
            {
                "class_path": "circuitft.callbacks.CircuitCallback",
                "init_args": {
                    "n_examples": 4,
                    "batch_size": 4,
                    "ig_steps": 2,
                    "top_frac": 0.2,
                    "diagrams": False,
                    "images": False,
                    "sizes": [0.1, 1.0],
                },
            }
        ],
    },
    "checkpoint": {"every_n_train_steps": 2},
    "model": {"model": "tiny-gpt2", "lora_r": 4, "lr": 1.0e-3},
    "data": {
        "batch_size": 4,
        "validate_on": "all",
        "tasks": [{"task": "AddSub", **TASK}, {"task": "AddSubInv", **TASK}],
    },
}
NOISE = (
    "GPU available",
    "TPU available",
    "litlogger",
    "💡",
    "LeafSpec",
    "_pytree",
    "Total FLOPs",
    "exists and is not empty",
    "Trainable params",
    "max_epochs=",
)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, small_config) -> tuple[Path, subprocess.CompletedProcess]:
    """A whole `circuitft fit` in a subprocess with its progress bar on (stdout and stderr as a user sees)."""
    root = tmp_path_factory.mktemp("small") / "mysmallrun"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("CIRCUITFT_VERBOSE", None)
    cmd = [
        sys.executable,
        "-m",
        "circuitft",
        "fit",
        "--config",
        str(small_config),
        "--trainer.default_root_dir",
        str(root),
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, r


def test_fit_output_names_tasks_phases_results_and_outputs(small_run):
    root, r = small_run
    out, err = r.stdout, r.stderr
    # the training bar names the task and its steps; the analysis bar names task, step and phase
    assert "task 1/2 AddSub (steps 0-2)" in err and "task 2/2 AddSubInv (steps 2-4)" in err
    assert "circuit AddSub @ step 2: attribute 1/1" in err and "circuit AddSub @ step 2: evaluate 1/1" in err
    assert "Epoch 0" not in err
    # one line per task after each analysis, with the edge change against the previous analysis
    lines = [ln for ln in out.splitlines() if ln.startswith("step ")]
    assert [ln.split(":")[0] for ln in lines] == [
        "step 0 AddSub",
        "step 2 AddSub",
        "step 4 AddSub",
        "step 4 AddSubInv",
    ]
    assert (
        "faithfulness" in lines[1]
        and "accuracy model" in lines[1]
        and "changed since the previous" in lines[1]
        and "(random sets: " in lines[1]  # the change beside its chance level
    )
    assert out.startswith("model tiny-gpt2: ") and "parameters trainable; tasks AddSub -> AddSubInv" in out
    # the summary: where everything is and the exact commands to look at it
    assert f"run {root}: 2 task(s) AddSub -> AddSubInv, finished at step 4" in out
    assert f"  circuits:    {root / 'circuits'}" in out and f"  checkpoints: {root / 'checkpoints'}" in out
    assert f"circuitft report {root} --out {root / 'report'}" in out
    assert f"tensorboard --logdir_spec mysmallrun:{root}" in out
    # the tiny random model does not do the tasks: warned at the end of each task's training
    assert (
        "warning: the model answers only 0% of the AddSub rows" in err
        and "at step 2, the end" in err
        and "does not do this task" in err
    )


def test_fit_output_has_none_of_the_framework_noise(small_run):
    _, r = small_run
    both = r.stdout + r.stderr
    assert [n for n in NOISE if n in both] == []
    assert "Traceback" not in both


def test_tensorboard_steps_agree(small_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = small_run
    acc = EventAccumulator(str(root), size_guidance={"scalars": 0}).Reload()
    steps = {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    # validation under the same steps as the checkpoints and circuits of the same weights
    assert steps["val/AddSub/acc"] == [2, 4] == steps["circuit/AddSub/faithfulness"][1:]
    assert sorted(p.name for p in (root / "checkpoints").glob("step*.ckpt")) == [
        "step000002.ckpt",
        "step000004.ckpt",
    ]
    assert steps["train/loss"] == [1, 2, 3, 4]
    assert [(e.step, e.value) for e in acc.Scalars("train/task")] == [(1, 0.0), (3, 1.0)]
    assert "epoch" not in steps


def test_resume_of_a_finished_run_says_so(small_run, small_config, capsys):
    root, _ = small_run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(
            [
                "fit",
                "--config",
                str(small_config),
                "--trainer.default_root_dir",
                str(root),
                "--trainer.enable_progress_bar",
                "false",
                "--ckpt_path",
                "last",
            ]
        )
    assert rc == 0
    out = capsys.readouterr().out
    assert (
        f"the run in {root / 'checkpoints' / 'last.ckpt'} finished at step 4 of 4: nothing left to train"
        in out
    )
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]


def _logs_to_this_test(monkeypatch) -> None:
    """Point stream handlers made on an earlier test's (now closed) captured stderr, such as Lightning's, here."""
    import logging

    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.root.manager.loggerDict.values() if hasattr(lg, "handlers")),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                monkeypatch.setattr(handler, "stream", sys.stderr)


def test_fresh_start_interrupt_and_resume_lines(tmp_path, small_config, capsys, monkeypatch):
    _logs_to_this_test(monkeypatch)
    root = tmp_path / "run"
    base = [
        "--config",
        str(small_config),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
    ]
    # --ckpt_path last before any checkpoint: one line, then a fresh run (interrupted at step 3 by "Ctrl-C")
    rc = main(
        [
            "fit",
            *base,
            "--ckpt_path",
            "last",
            "--trainer.callbacks+=tests.training.killer.InterruptAtStep",
            "--trainer.callbacks.step",
            "3",
        ]
    )
    assert rc == 130
    cap = capsys.readouterr()
    assert (
        f"--ckpt_path last: no checkpoint in {root / 'checkpoints'} yet, so this run starts fresh" in cap.out
    )
    expected = fit_messages.resume_command(
        [*base, "--trainer.callbacks+=tests.training.killer.InterruptAtStep", "--trainer.callbacks.step", "3"]
    )
    assert f"interrupted at step 3 of 4; resume from the last checkpoint with:\n  {expected}" in cap.err
    assert expected.endswith("--ckpt_path last") and expected.count("--ckpt_path") == 1
    assert "Traceback" not in cap.err
    # resuming names the task, the step and the file
    assert main(["fit", *base, "--ckpt_path", "last"]) == 0
    out = capsys.readouterr().out
    ckpt = root / "checkpoints" / "last.ckpt"
    assert f"resuming AddSubInv (task 2/2) at step 2 of 4 from {ckpt}" in out
    assert f"run {root}: 2 task(s) AddSub -> AddSubInv, finished at step 4" in out


def test_ckpt_path_last_with_only_step_checkpoints_is_refused(tmp_path, small_config, capsys):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "step000002.ckpt").write_bytes(b"")
    rc = main(
        [
            "fit",
            "--config",
            str(small_config),
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--ckpt_path",
            "last",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "holds no last*.ckpt (step000002.ckpt, ...); resume from one of them with --ckpt_path" in err


def test_messages():
    r = fit_messages.Resume(Path("r/last.ckpt"), 7, ["A", "B"], [5, 5])
    assert r.line() == "resuming B (task 2/2) at step 7 of 10 from r/last.ckpt"
    assert fit_messages.Resume(Path("x"), 0, ["A"], [5]).line().startswith("resuming A (task 1/1) at step 0")
    cmd = fit_messages.resume_command(
        ["--config", "a b.yaml", "--ckpt_path", "x.ckpt", "--ckpt_path=y", "--z", "1"]
    )
    assert cmd == "circuitft fit --config 'a b.yaml' --z 1 --ckpt_path last"
    assert fit_messages.tensorboard_command(Path("runs/odd,name")) == "tensorboard --logdir runs/odd,name"


def test_summary_gives_the_rows_behind_each_accuracy():
    from circuitft.commands import fit_messages

    text = fit_messages.summary(
        Path("runs/x"), ["A", "B"], 8, 8, {"A": 0.5, "B": 0.25},
        {"final/A/accuracy": 0.5, "final/A/faithfulness": 0.9}, None, None, [], {"A": (8, 8), "B": (40, 32)},
    )  # fmt: skip
    assert (
        "A: validation accuracy 0.50 (n=8, < 20 rows), model accuracy 0.50 and circuit faithfulness 0.90 on "
        "the circuit examples (n=8, < 20 rows)" in text
    )
    assert "B: validation accuracy 0.25 (n=40)" in text
    assert fit_messages.few_rows({"A": 1.0, "B": 0.5}, {"A": 2, "B": 20}, "test") == [
        "warning: test accuracy of A (1.00) rests on 2 rows (< 20): one row moves it by 50 points"
    ]
