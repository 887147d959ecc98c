"""TaskStreamDataModule: seeded batches, rank shards, stream position, bad task lists."""

from __future__ import annotations

import pytest
import torch

from circuitft.data.stream import TaskConfig, TaskStreamDataModule, _TaskBatches
from circuitft.errors import ConfigError, DataError
from circuitft.models import load_tokenizer

TASKS = [
    {"task": "AddSub", "steps": 4, "n_train": 24, "n_val": 6, "params": {"lo": 0, "hi": 9}},
    {"task": "AddSubInv", "steps": 3, "n_train": 24, "n_val": 6, "params": {"lo": 0, "hi": 9}},
]


def _dm(**kw) -> TaskStreamDataModule:
    dm = TaskStreamDataModule(tasks=kw.pop("tasks", TASKS), batch_size=4, **kw)
    dm.tokenizer = load_tokenizer("tiny-gpt2")
    dm.setup("fit")
    return dm


def test_tasks_built_seeded_and_split():
    dm, again = _dm(), _dm()
    assert dm.names == ["AddSub", "AddSubInv"] and dm.task_steps() == [4, 3]
    tr, va = dm.task_pairs("AddSub", "train"), dm.task_pairs("AddSub", "val")
    assert (len(tr), len(va)) == (24, 6)
    assert torch.equal(tr.clean_ids, again.task_pairs("AddSub", "train").clean_ids)
    assert dm.task_seed(0) != dm.task_seed(1)
    with pytest.raises(ConfigError, match="no task named"):
        dm.task_pairs("Nope")


def test_batches_deterministic_and_rank_shards_disjoint():
    pairs = _dm().task_pairs("AddSub", "train")
    one = _TaskBatches(pairs, 0, 4, seed=7, rank=0, world=1)
    r0, r1 = (_TaskBatches(pairs, 0, 4, seed=7, rank=r, world=2) for r in (0, 1))
    assert one.rows(0) + one.rows(1) == r0.rows(0) + r1.rows(0)
    assert set(r0.rows(0)).isdisjoint(r1.rows(0))
    # a pass over the rows is a permutation; the next pass is another one
    first = sum((one.rows(k) for k in range(6)), [])
    assert sorted(first) == list(range(24))
    assert sum((one.rows(k) for k in range(6, 12)), []) != first


def test_eval_loader_tags_every_batch_with_its_task():
    dm = _dm(validate_on="all")
    items = list(dm.val_dataloader())
    assert [it["task_idx"] for it in items] == [0, 0, 1, 1]
    assert sum(len(it["batch"]) for it in items) == 12


def test_state_dict_refuses_another_stream():
    dm = _dm()
    state = dm.state_dict()
    assert state["tasks"] == ["AddSub", "AddSubInv"] and state["task_steps"] == [4, 3]
    dm.load_state_dict(state)
    other = _dm(tasks=[{**TASKS[0], "steps": 5}, TASKS[1]])
    with pytest.raises(ConfigError, match="task stream"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    "tasks, match",
    [
        ([], "empty"),
        ([{"task": "AddSub", "steps": 0}], "positive"),
        ([{"task": "AddSub"}], "exactly one of steps or epochs"),
        ([{"task": "AddSub", "steps": 2}, {"task": "AddSub", "steps": 2}], "duplicate"),
    ],
)
def test_bad_task_lists(tasks, match):
    with pytest.raises(ConfigError, match=match):
        TaskStreamDataModule(tasks=tasks)


def test_unknown_task_names_the_stage():
    with pytest.raises(DataError, match=r"data.tasks\[0\].*unknown task 'AddSubb'"):
        TaskStreamDataModule(tasks=[TaskConfig(task="AddSubb", steps=2)])
    with pytest.raises(DataError, match=r"data.tasks\[0\].*unknown parameter 'low'"):
        TaskStreamDataModule(tasks=[TaskConfig(task="AddSub", steps=2, params={"low": 1})])


def test_epochs_convert_to_steps():
    dm = _dm(tasks=[{"task": "Add", "epochs": 2, "n_train": 10, "n_val": 2, "params": {"lo": 0, "hi": 9}}])
    assert dm.task_steps() == [5]  # ceil(2 * 10 / 4)


def test_csv_source_task_split_in_file_order(tmp_path):
    f = tmp_path / "mine.csv"
    rows = ["clean,corrupted,answer"] + [
        f"{a}+{b}=,{a}+{(b + 1) % 10}=,{a + b}" for a in range(4) for b in range(3)
    ]
    f.write_text("\n".join(rows) + "\n")
    dm = _dm(tasks=[{"task": "mine", "source": str(f), "steps": 2, "n_val": 4}])
    assert (len(dm.task_pairs("mine", "train")), len(dm.task_pairs("mine", "val"))) == (8, 4)
    assert dm.task_pairs("mine", "val").rows[0].clean == "2+2="
