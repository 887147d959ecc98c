"""`circuitft sweep`: run lists from a sweep file, shards, skip finished runs, resume interrupted ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitft.commands import sweep
from circuitft.errors import ConfigError
from circuitft.runfolder import RunFolder
from circuitft.sweeps.execute import fit_command

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "sweep.yaml"
    f.write_text(body)
    return f


def test_pairs_yaml_has_the_56_ordered_pairs():
    fit_config, root, runs = sweep.load_sweep(REPO / "configs" / "experiments" / "pairs.yaml")
    assert fit_config.name == "pair_base.yaml" and fit_config.is_file()
    assert len(runs) == 56 and len({r.name for r in runs}) == 56
    assert runs[0].name == "Abs__Add"
    stream = json.loads(runs[0].args[runs[0].args.index("--data.tasks") + 1])
    assert [s["task"] for s in stream] == ["Abs", "Add"] and stream[1]["steps"] == 270
    assert runs[0].args[:2] == ["--model.later_tasks_lr_scale", "1.0"]


def test_shards_partition_the_runs():
    _, _, runs = sweep.load_sweep(REPO / "configs" / "experiments" / "pairs.yaml")
    shards = [runs[i::3] for i in range(3)]
    assert sorted(r.name for s in shards for r in s) == sorted(r.name for r in runs)
    assert sweep.parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ConfigError, match="shard"):
            sweep.parse_shard(bad)


def test_run_state(tmp_path):
    folder = tmp_path / "r"
    assert RunFolder(folder).state() == "new"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert RunFolder(folder).state() == "resume"
    cmd = fit_command(Path("f.yaml"), folder, ["--a", "1"], resume=True)
    assert cmd[-2:] == ["--ckpt_path", "last"] and "--a" in cmd
    RunFolder(folder).mark_done(1.5)
    assert RunFolder(folder).state() == "done" and RunFolder(folder).done_seconds() == 1.5


@pytest.mark.parametrize(
    "body, match",
    [
        ("fit_config: nope.yaml\nruns: [{name: a}]\n", "does not exist"),
        ("fit_config: {q}\nbogus: 1\n", "unknown option 'bogus' \\(from config file .*; valid: args, "),
        ("fit_config: {q}\n", "no runs"),
        ("fit_config: {q}\nruns: [{name: a}, {name: a}]\n", "duplicate"),
    ],
)
def test_bad_sweep_files(tmp_path, body, match):
    f = _write(tmp_path, body.replace("{q}", str(REPO / "configs" / "quick.yaml")))
    with pytest.raises(ConfigError, match=match):
        sweep.load_sweep(f)


@pytest.mark.slow
def test_sweep_runs_skips_and_resumes(tmp_path, capsys):
    f = _write(
        tmp_path,
        f"fit_config: {REPO / 'configs' / 'quick.yaml'}\nroot_dir: {tmp_path / 'runs'}\n"
        "args: [--trainer.val_check_interval, '2', --checkpoint.every_n_train_steps, '2',"
        " --trainer.enable_progress_bar, 'false']\n"
        "permutations:\n  tasks: [Add, Sub]\n  length: 2\n"
        "  stage: {steps: 2, n_train: 8, n_val: 4, params: {lo: 0, hi: 19}}\n",
    )
    assert sweep.main("sweep", ["--config", str(f)]) == 0
    done = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/DONE"))
    assert done == ["Add__Sub", "Sub__Add"]
    assert (tmp_path / "runs" / "Add__Sub" / "checkpoints" / "last.ckpt").is_file()
    (tmp_path / "runs" / "Sub__Add" / "DONE").unlink()  # as if interrupted after its last checkpoint
    capsys.readouterr()
    assert sweep.main("sweep", ["--config", str(f), "--shard", "0/1"]) == 0
    out = capsys.readouterr().out
    assert "Add__Sub: done" in out and "Sub__Add: resume" in out
    assert (tmp_path / "runs" / "Sub__Add" / "DONE").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('[--data.tasks, \'[{"task": "Nope", "steps": 2}]\']', "run a: data.tasks[0]: unknown task 'Nope'"),
        ('[--data.tasks, \'[{"task": "Add", "steps": 0}]\']', "steps must be positive"),
        ("[--model.bogus, '1']", "bogus"),
    ],
)
def test_dry_run_checks_every_run(tmp_path: Path, capsys, args: str, message: str) -> None:
    from circuitft.cli import main

    quick = Path(__file__).resolve().parents[2] / "configs" / "quick.yaml"
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"fit_config: {quick}\nroot_dir: {tmp_path / 'runs'}\nruns:\n  - {{name: a, args: {args}}}\n"
    )
    assert main(["sweep", "--config", str(spec), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not (tmp_path / "runs").exists()
