"""``circuitft sweep --dry_run``: the table of runs, steps, analyses and states, the totals, the time estimate."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from circuitft.cli import main
from circuitft.runlock import RunLock
from circuitft.sweeps import plan as sweep_plan

REPO = Path(__file__).resolve().parents[2]
QUICK_PAIRS = REPO / "configs" / "quick_pairs.yaml"


def dry_run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """The printed lines and the table rows by run name (columns split on two or more spaces); runs train
    from scratch unless ``--share_prefix`` is given (tests/sweeps covers shared prefixes)."""
    if "--share_prefix" not in argv:
        argv = (*argv, "--share_prefix", "false")
    assert main(["sweep", *map(str, argv), "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith(("stage trainings:", "total:", "time:")):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return lines, rows


def quick_pairs_counts() -> tuple[int, int, int]:
    """Runs, steps per run and analyses per run of configs/quick_pairs.yaml, counted by hand from the files."""
    sweep = yaml.safe_load(QUICK_PAIRS.read_text())
    fit = yaml.safe_load((QUICK_PAIRS.parent / sweep["fit_config"]).read_text())
    perm = sweep["permutations"]
    tasks, length, steps = len(perm["tasks"]), perm["length"], perm["stage"]["steps"]
    runs = tasks * (tasks - 1)  # ordered pairs of distinct tasks
    assert length == 2
    args = sweep["args"]
    interval = int(args[args.index("--checkpoint.every_n_train_steps") + 1])
    callbacks = fit["trainer"]["callbacks"]
    callback = next(c for c in callbacks if c["class_path"].endswith("CircuitCallback"))["init_args"]
    assert callback["tasks"] == "seen" and "at_start" not in callback and "every_n_steps" not in callback
    assert args[args.index("--trainer.callbacks.init_args.tasks") + 1] == "all"  # the sweep's override
    assert steps % interval == 0
    # step 0 and every `interval` steps of both stages, both tasks each time (tasks: all)
    analyses = (1 + 2 * (steps // interval)) * 2
    return runs, 2 * steps, analyses


def seen_pairs(tmp_path: Path) -> Path:
    """configs/quick_pairs.yaml analysing the tasks seen so far (the callback's default), for the tests whose
    hand-made run folders hold that schedule's records (4 analyses per finished run)."""
    text = QUICK_PAIRS.read_text().replace("--trainer.callbacks.init_args.tasks, all, ", "")
    text = text.replace("fit_config: quick.yaml", f"fit_config: {QUICK_PAIRS.parent / 'quick.yaml'}")
    assert "init_args.tasks" not in text
    path = tmp_path / "seen_pairs.yaml"
    path.write_text(text)
    return path


def test_quick_pairs_table_counts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # root_dir runs/quick_pairs is relative: empty here
    runs, steps, analyses = quick_pairs_counts()
    lines, rows = dry_run(capsys, "--config", QUICK_PAIRS)
    assert lines[0].startswith(f"sweep {QUICK_PAIRS}: {runs} runs of ") and "model tiny-gpt2" in lines[0]
    assert len(rows) == runs == 6
    assert rows["FloorDiv__Modulo"] == ["FloorDiv -> Modulo", str(steps), str(analyses), "new"]
    assert all(r[1:] == [str(steps), str(analyses), "new"] for r in rows.values())
    total = next(line for line in lines if line.startswith("total:"))
    assert total == (
        f"total: 6 runs (0 done, 0 partial, 0 locked, 6 new), {runs * steps} steps ({runs * steps} to go), "
        f"{runs * analyses} analyses ({runs * analyses} to go)"
    )
    assert lines[-1] == (
        "time: no estimate: no finished run in runs/quick_pairs/ yet; run one with "
        f"`circuitft sweep --config {QUICK_PAIRS} --share_prefix false --only FloorDiv__Modulo`, then --dry_run again"
    )
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_shard_and_only_pick_the_listed_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, rows = dry_run(capsys, "--config", QUICK_PAIRS, "--shard", "1/2")
    assert list(rows) == ["FloorDiv__Abs", "Modulo__Abs", "Abs__Modulo"]
    _, rows = dry_run(capsys, "--config", QUICK_PAIRS, "--only", "Abs__Modulo", "FloorDiv__Abs")
    assert list(rows) == ["FloorDiv__Abs", "Abs__Modulo"]


def _records(folder: Path, steps_tasks: list[tuple[int, str]]) -> None:
    (folder / "circuits").mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": s, "task": t, "seconds": 1.0}) for s, t in steps_tasks]
    lines.append(json.dumps({"step": 99, "task": "*", "error": "failed"}))  # a failed analysis: not counted
    (folder / "circuits" / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _finished_run(folder: Path, t0: float) -> None:
    """A done pair run of 16 steps: TensorBoard events spanning 40 s, 4 analyses of 2 s each."""
    from torch.utils.tensorboard import SummaryWriter

    _records(folder, [(0, "FloorDiv"), (8, "FloorDiv"), (16, "FloorDiv"), (16, "Modulo")])
    writer = SummaryWriter(str(folder))
    for step in range(16):
        writer.add_scalar("train/loss", 1.0, step, walltime=t0 + 2 + 2 * step)
    for step, n in ((0, 1), (8, 1), (16, 2)):
        writer.add_scalar("circuit/seconds", 2.0 * n, step, walltime=t0 + 2.5 * step)
    writer.add_scalar("final/average_accuracy", 0.5, 16, walltime=t0 + 40)
    writer.close()
    (folder / "DONE").write_text("finished\n")


def test_states_partial_locked_done_and_the_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "quick_pairs"
    _finished_run(root / "FloorDiv__Modulo", time.time())
    partial = root / "FloorDiv__Abs"
    (partial / "checkpoints").mkdir(parents=True)
    for name in ("step000008.ckpt", "last.ckpt"):
        (partial / "checkpoints" / name).write_bytes(b"")
    _records(partial, [(0, "FloorDiv"), (8, "FloorDiv")])  # step 8 is analysed again on resume
    locked = root / "Modulo__FloorDiv"
    lock = RunLock(locked, "sweep").acquire()
    try:
        lines, rows = dry_run(capsys, "--config", seen_pairs(tmp_path))
    finally:
        lock.release()
    assert rows["FloorDiv__Modulo"][-1] == "done"
    assert rows["FloorDiv__Abs"][-1] == "partial (at step 8)"
    assert rows["Modulo__FloorDiv"][-1] == "locked"
    assert rows["Abs__Modulo"][-1] == "new"
    total = next(line for line in lines if line.startswith("total:"))
    # to go: 8 + 16 * 4 steps; 3 (partial: 4 less the 1 before step 8) + 4 * 4 analyses
    assert (
        total
        == "total: 6 runs (1 done, 1 partial, 1 locked, 3 new), 96 steps (72 to go), 24 analyses (19 to go)"
    )
    m = re.fullmatch(
        r"time: about (.+) for the 5 runs to go, estimated from 1 finished run in runs/quick_pairs/ "
        r"\(([\d.]+) s per training step with its validation and checkpoints, ([\d.]+) s per analysis; "
        r"each run's start-up, loading the model, not counted\)",
        lines[-1],
    )
    assert m, lines[-1]
    step_s, analysis_s = float(m.group(2)), float(m.group(3))
    assert step_s == pytest.approx((40 - 8) / 16, abs=0.05)  # (event span - analysis seconds) / steps
    assert analysis_s == pytest.approx(8 / 4)
    assert m.group(1) == sweep_plan.duration(72 * step_s + 19 * analysis_s)


def test_all_done_and_no_timing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "quick_pairs"
    _finished_run(root / "Abs__Modulo", time.time())
    lines, rows = dry_run(capsys, "--config", QUICK_PAIRS, "--only", "Abs__Modulo")
    assert rows["Abs__Modulo"][-1] == "done" and lines[-1] == "time: nothing to run (every run is done)"
    _records(root / "Abs__FloorDiv", [(0, "Abs")])  # finished without TensorBoard events (logger off)
    (root / "Abs__FloorDiv" / "DONE").write_text("finished\n")
    for events in (root / "Abs__Modulo").glob("events.out.tfevents.*"):
        events.unlink()
    lines, rows = dry_run(
        capsys, "--config", QUICK_PAIRS, "--only", "Abs__Modulo", "Abs__FloorDiv", "Modulo__Abs"
    )
    assert [r[-1] for r in rows.values()] == ["new", "done", "done"]
    assert lines[-1] == (
        "time: no estimate: the 2 finished runs in runs/quick_pairs/ recorded no TensorBoard events with their "
        "steps to time"
    )


def test_counts_follow_the_callback_settings(tmp_path):
    fit = tmp_path / "fit.yaml"
    fit.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [{"class_path": "circuitft.callbacks.CircuitCallback", "init_args": {}}]
                },
                "checkpoint": {"every_n_train_steps": 5},
                "data": {
                    "batch_size": 4,
                    "tasks": [{"task": "Add", "steps": 10}, {"task": "Sub", "steps": 7}],
                },
            }
        )
    )
    cfg = sweep_plan.run_config(fit, [])
    steps = sweep_plan.stage_steps(cfg)
    assert steps == [10, 7]
    # analysis steps 0, 5, 10 (end of Add), 15, 17 (end): seen tasks 1, 1, 1, 2, 2
    assert sweep_plan.count_analyses(cfg, steps) == 7
    cfg = sweep_plan.run_config(
        fit,
        [
            "--trainer.callbacks",
            '[{"class_path": "CircuitCallback", "init_args": '
            '{"tasks": "all", "at_start": false, "every_n_steps": 4}}]',
        ],
    )
    # steps 4, 8, 10, 12, 16, 17 with both tasks
    assert sweep_plan.count_analyses(cfg, steps) == 12
    cfg = sweep_plan.run_config(
        fit,
        [
            "--data.tasks",
            '[{"mix": ["Add", "Sub"], "epochs": 2, "n_train": 10}, {"task": "Abs", "steps": 5}]',
            "--checkpoint.every_n_train_steps=100",
        ],
    )
    steps = sweep_plan.stage_steps(cfg)
    assert steps == [10, 5]  # 2 epochs of 20 rows, batches of 4
    # steps 0 (first task only), 10 (Add, Sub), 15 (all three)
    assert sweep_plan.count_analyses(cfg, steps) == 1 + 2 + 3
    cfg = sweep_plan.run_config(
        fit, ["--trainer.callbacks", "[]", "--data.tasks", '[{"task": "X", "source": "x.csv", "epochs": 1}]']
    )
    assert sweep_plan.stage_steps(cfg) == [None] and sweep_plan.count_analyses(cfg, [None]) == 0


@pytest.mark.slow
def test_dry_run_counts_match_a_real_run(tmp_path, capsys, monkeypatch):
    """Run one pair for real: its folder then holds as many analyses as the dry run counted."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "pairs.yaml"
    spec.write_text(
        f"fit_config: {REPO / 'configs' / 'quick.yaml'}\nroot_dir: runs/p\n"
        "args: [--trainer.val_check_interval, '2', --checkpoint.every_n_train_steps, '3',"
        " --trainer.enable_progress_bar, 'false']\n"
        "permutations:\n  tasks: [Add, Sub]\n  length: 2\n  stage: {steps: 4, n_train: 8, n_val: 4}\n"
    )
    _, before = dry_run(capsys, "--config", spec)
    assert before["Add__Sub"][1:] == ["8", "7", "new"]  # steps 0, 3, 4 (end of Add), 6, 8: 1+1+1+2+2
    assert main(["sweep", "--config", str(spec), "--only", "Add__Sub"]) == 0
    records = (tmp_path / "runs" / "p" / "Add__Sub" / "circuits" / "metrics.jsonl").read_text().splitlines()
    lines, after = dry_run(capsys, "--config", spec)
    assert after["Add__Sub"] == ["Add -> Sub", "8", str(len(records)), "done"]
    assert lines[-1].startswith("time: about ") and "estimated from 1 finished run in runs/p/" in lines[-1]
    # the estimate against a finished run: the other pair (same steps and analyses) timed for real
    estimate = re.match(r"time: about (?:(\d+) min )?(\d+) s for the 1 run to go", lines[-1])
    assert estimate and "s to start each run, loading the model" in lines[-1], lines[-1]
    predicted = 60 * int(estimate.group(1) or 0) + int(estimate.group(2))
    started = time.monotonic()
    assert main(["sweep", "--config", str(spec), "--only", "Sub__Add"]) == 0
    took = time.monotonic() - started
    assert took / 2 <= predicted <= took * 2, (predicted, took)  # the 2 min 12 s for 5 x 47.7 s


def test_suggested_command_keeps_the_options_given(tmp_path, capsys, monkeypatch):
    """The issue's case: `sweep --root_dir DIR --dry_run` suggested an --only command without --root_dir."""
    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(QUICK_PAIRS), "--root_dir", "my runs", "--shard", "1/2", "--dry_run"]
    assert main(["sweep", *argv, "--", "--model.lr", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        "time: no estimate: no finished run in my runs/ yet; run one with "
        f"`circuitft sweep --config {QUICK_PAIRS} --root_dir 'my runs' --only FloorDiv__Abs -- --model.lr 0.1`"
        ", then --dry_run again"
    )  # --shard left out: it would take its share of the one run --only names


def test_estimate_counts_each_runs_start_up(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "quick_pairs"
    _finished_run(root / "FloorDiv__Modulo", time.time())  # events span 40 s
    (root / "FloorDiv__Modulo" / "DONE").write_text("finished\nseconds: 52.0\n")  # the sweep's wall time
    lines, _ = dry_run(capsys, "--config", seen_pairs(tmp_path), "--only", "FloorDiv__Modulo", "Abs__Modulo")
    m = re.fullmatch(
        r"time: about (.+) for the 1 run to go, estimated from 1 finished run in runs/quick_pairs/ "
        r"\(([\d.]+) s per training step .*, ([\d.]+) s per analysis; 12 s to start each run, loading the model\)",
        lines[-1],
    )
    assert m, lines[-1]
    step_s, analysis_s = float(m.group(2)), float(m.group(3))
    assert m.group(1) == sweep_plan.duration(16 * step_s + 4 * analysis_s + 12)


def test_run_config_sets_an_option_of_the_last_callback():
    cfg = sweep_plan.run_config(
        QUICK_PAIRS.parent / "quick.yaml", ["--trainer.callbacks.init_args.split_half", "true"]
    )
    assert cfg["trainer"]["callbacks"][-1]["init_args"]["split_half"] is True
    assert cfg["trainer"]["callbacks"][-1]["class_path"].endswith("CircuitCallback")
