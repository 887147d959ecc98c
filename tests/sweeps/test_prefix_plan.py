"""Which stream prefixes a sweep's runs share, and what ``sweep --dry_run`` says about them (no training)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from circuitft.commands import sweep
from circuitft.sweeps.prefix import cross_set, plan_sharing, stream_units
from circuitft.sweeps.spec import Run

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "configs" / "quick.yaml"
STAGE = {"steps": 4, "n_train": 16, "n_val": 4, "params": {"lo": 1, "hi": 19}}


def _runs(streams: dict[str, list[str]], stage: dict | None = None) -> list[Run]:
    return [
        Run(name, ["--data.tasks", json.dumps([{"task": t, **(stage or STAGE)} for t in tasks])])
        for name, tasks in streams.items()
    ]


def _perms(tasks: list[str], length: int) -> dict[str, list[str]]:
    import itertools

    return {"__".join(c): list(c) for c in itertools.permutations(tasks, length)}


def test_pairs_of_four_tasks_train_each_first_stage_once():
    runs = _runs(_perms(["Add", "Sub", "Abs", "Modulo"], 2))
    sharing = plan_sharing(QUICK, runs, [])
    assert sharing.stage_trainings() == (16, 4, 24)  # 4 first stages + 12 second stages, not 24
    assert len(sharing.prefixes) == 4
    add = sharing.start["Add__Sub"]
    assert add is sharing.start["Add__Abs"] and add.end == 4 and add.parent is None
    assert sorted(add.runs) == ["Add__Abs", "Add__Modulo", "Add__Sub"]
    assert add.extras == []  # quick.yaml analyses the tasks seen so far: nothing to analyse ahead


def test_share_prefix_false_shares_nothing():
    runs = _runs(_perms(["Add", "Sub", "Abs"], 2))
    sharing = plan_sharing(QUICK, runs, [], share=False)
    assert sharing.prefixes == [] and sharing.stage_trainings() == (12, 0, 12)


def test_analysis_ahead_builds_every_later_task_with_its_runs_seed():
    runs = _runs(_perms(["Add", "Sub", "Abs"], 2))
    sharing = plan_sharing(QUICK, runs, ["--trainer.callbacks.init_args.tasks", "all"])
    add = sharing.start["Add__Sub"]
    assert [u["task"] for u in add.extras] == ["Abs", "Sub"]
    assert {u["seed"] for u in add.extras} == {1}  # second in its run: data.seed 0 + position 1
    cfg = add.config()
    assert cfg["data"]["tasks"] == add.stages and cfg["data"]["analysis_tasks"] == add.extras
    assert "trainer" not in cfg  # 3 tasks in the prefix: the automatic cross-task choice covers each run's 2


def test_triples_share_the_first_two_stages_when_later_tasks_disagree():
    # with tasks: all, Add -> Sub -> Abs needs Abs built third (seed 2) at the end of Add, and
    # Add -> Abs -> Sub needs it second (seed 1): [Add] cannot be shared between them, [Add, Sub] can
    runs = _runs(_perms(["Add", "Sub", "Abs", "Modulo"], 3))
    ahead = plan_sharing(QUICK, runs, ["--trainer.callbacks.init_args.tasks", "all"])
    assert all(p.depth == 2 for p in ahead.prefixes) and len(ahead.prefixes) == 12
    assert ahead.stage_trainings() == (12 * 2 + 24, 24, 72)
    seen = plan_sharing(QUICK, runs, [])  # tasks seen: nothing ahead, both levels shared
    assert len(seen.prefixes) == 4 + 12 and seen.stage_trainings() == (4 + 12 + 24, 16, 72)
    two = seen.start["Add__Sub__Abs"]
    assert two.depth == 2 and two.parent is seen.start["Add__Sub__Abs"].parent and two.parent.depth == 1
    assert two.parent.end == 4 and two.end == 8


def test_epochs_stages_and_lone_runs_do_not_share():
    epochs = {"epochs": 1, "n_train": 16, "n_val": 4, "params": {"lo": 1, "hi": 19}}
    runs = _runs({"A": ["Add", "Sub"], "B": ["Add", "Abs"]}, epochs)
    assert plan_sharing(QUICK, runs, []).prefixes == []
    runs = _runs({"A": ["Add", "Sub"], "B": ["Sub", "Add"]})
    assert plan_sharing(QUICK, runs, []).prefixes == []  # no two runs start alike


def test_runs_with_other_options_do_not_share():
    runs = _runs({"A": ["Add", "Sub"], "B": ["Add", "Abs"]})
    runs[1].args += ["--model.lr", "0.5"]
    assert plan_sharing(QUICK, runs, []).prefixes == []


def test_units_resolve_seeds_and_mixed_stages():
    cfg = {
        "data": {
            "seed": 10,
            "tasks": [
                {"task": "Add", "steps": 2, "n_val": 5},
                {"mix": ["Sub", {"task": "Abs", "seed": 3}], "steps": 2, "n_train": 8},
            ],
        }
    }
    units = stream_units(cfg)
    assert [n for n, _ in units] == ["Add", "Sub", "Abs"]
    assert [u["seed"] for _, u in units] == [10, 11, 3]
    assert units[0][1]["n_test"] == 5 and units[1][1]["n_train"] == 8


def test_cross_set_follows_the_callback():
    assert cross_set(None, ["a", "b"]) == {"a", "b"}
    assert cross_set(None, ["a"]) == set()
    assert cross_set(None, list("abcdefghi")) == set()  # more than 8 tasks: off
    assert cross_set(False, ["a", "b"]) == set() and cross_set(["a"], ["a", "b"]) == {"a"}


@pytest.mark.parametrize("share, expected", [(True, "stage trainings: 16 (4 shared)"), (False, None)])
def test_dry_run_of_the_pair_demo_counts_stage_trainings(tmp_path, capsys, share, expected):
    args = [
        "--config",
        str(REPO / "configs" / "demo_pairs.yaml"),
        "--root_dir",
        str(tmp_path / "r"),
        "--dry_run",
    ]
    assert sweep.main("sweep", [*args, "--share_prefix", str(share).lower()]) == 0
    out = capsys.readouterr().out
    found = re.search(r"stage trainings: (\d+) \((\d+) shared\)", out)
    n_tasks = len(re.findall(r"^\.prefixes/", out, re.MULTILINE))
    if share:
        assert found and found.group(0) == expected and n_tasks == 4
        assert "24 without share_prefix" in out
        assert re.search(
            r"^Add__Sub .* new \(from step \d+ of \.prefixes/Add-[0-9a-f]{8}\)$", out, re.MULTILINE
        )
    else:
        assert found and found.group(0) == "stage trainings: 24 (0 shared)" and n_tasks == 0


def test_a_worker_runs_other_runs_first_while_another_trains_their_prefix(tmp_path, monkeypatch, capsys):
    from circuitft.runlock import RunLock
    from circuitft.sweeps.execute import SweepRunner

    runs = _runs({"Add__Sub": ["Add", "Sub"], "Add__Abs": ["Add", "Abs"], "Sub__Add": ["Sub", "Add"],
                  "Sub__Abs": ["Sub", "Abs"]})  # fmt: skip
    sharing = plan_sharing(QUICK, runs, [])
    runner = SweepRunner(QUICK, tmp_path, [], sharing)
    order = []
    monkeypatch.setattr(runner, "run_one", lambda run, folder, start: order.append(run.name))
    add = sharing.start["Add__Sub"].folder(tmp_path)
    lock = RunLock(add, "sweep").acquire()  # "another worker" trains the Add prefix
    try:
        assert runner.busy_prefix(sharing.start["Add__Sub"]) and not runner.busy_prefix(
            sharing.start["Sub__Add"]
        )
        assert runner.run_all(runs) == 0
    finally:
        lock.release()
    assert order == ["Sub__Add", "Sub__Abs", "Add__Sub", "Add__Abs"]  # the Add runs wait at the back
    assert "[1/4] Sub__Add: new (from prefix Sub-" in capsys.readouterr().out
