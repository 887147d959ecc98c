"""TaskStreamDataModule: seeded batches, rank shards, stream position, bad task lists."""

from __future__ import annotations

import pytest
import torch

from circuitft.data.batches import StageBatches
from circuitft.data.stream import TaskConfig, TaskStreamDataModule
from circuitft.errors import ConfigError, DataError
from circuitft.models import load_tokenizer

TASKS = [
    {"task": "AddSub", "steps": 4, "n_train": 24, "n_val": 4, "params": {"lo": 0, "hi": 9}},
    {"task": "AddSubInv", "steps": 3, "n_train": 24, "n_val": 4, "params": {"lo": 0, "hi": 9}},
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
    assert (len(tr), len(va)) == (24, 4)
    assert torch.equal(tr.clean_ids, again.task_pairs("AddSub", "train").clean_ids)
    assert dm.task_seed(0) != dm.task_seed(1)
    with pytest.raises(ConfigError, match="no task named"):
        dm.task_pairs("Nope")


def test_batches_deterministic_and_rank_shards_disjoint():
    pairs = _dm().task_pairs("AddSub", "train")
    one = StageBatches([pairs], [7], [1.0], 0, 4, rank=0, world=1)
    r0, r1 = (StageBatches([pairs], [7], [1.0], 0, 4, rank=r, world=2) for r in (0, 1))
    assert one.rows(0) + one.rows(1) == r0.rows(0) + r1.rows(0)
    assert set(r0.rows(0)).isdisjoint(r1.rows(0))
    # a pass over the rows is a permutation; the next pass is another one
    first = sum((one.rows(k) for k in range(6)), [])
    assert sorted(first) == list(range(24))
    assert sum((one.rows(k) for k in range(6, 12)), []) != first


def test_eval_loader_tags_every_batch_with_its_task():
    dm = _dm(validate_on="all", val_batch_size=2)
    items = list(dm.val_dataloader())
    assert [it["task_idx"] for it in items] == [0, 0, 1, 1]
    assert sum(len(it["batch"]) for it in items) == 8


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


def test_csv_source_split_column_honoured_and_cross_split_prompts_dropped(tmp_path, caplog):
    f = tmp_path / "mine.csv"
    rows = ["clean,corrupted,answer,split"]
    rows += [f"{a}+{b}=,{a}+{(b + 1) % 10}=,{a + b},train" for a in range(4) for b in range(2)]
    rows += [f"{a}+{b}=,{a}+{(b + 1) % 10}=,{a + b},val" for a in range(4) for b in range(2, 3)]
    rows += ["0+0=,0+1=,0,test", "9+9=,9+1=,18,test"]  # 0+0= is a training prompt: dropped from test
    f.write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING"):
        dm = _dm(tasks=[{"task": "mine", "source": str(f), "steps": 2, "n_val": 3}])
    sizes = [len(dm.task_pairs("mine", s)) for s in ("train", "val", "test")]
    assert sizes == [8, 3, 1]  # val capped at n_val; n_test defaults to n_val
    assert dm.task_pairs("mine", "val").rows[0].clean == "0+2="
    assert dm.task_pairs("mine", "test").rows[0].clean == "9+9="
    assert "1 test rows dropped" in caplog.text


def test_csv_source_without_split_column_splits_by_hash(tmp_path):
    from circuitft.data.splits import split_of

    f = tmp_path / "mine.csv"
    prompts = [f"{a}+{b}=" for a in range(10) for b in range(10)]
    f.write_text(
        "clean,corrupted,answer\n" + "".join(f"{p},{p[:-2]}{(int(p[-2]) + 1) % 10}=,1\n" for p in prompts)
    )
    dm = _dm(tasks=[{"task": "mine", "source": str(f), "steps": 2, "n_val": 100}])
    for split in ("train", "val", "test"):
        got = [r.clean for r in dm.task_pairs("mine", split).rows]
        assert got == [p for p in prompts if split_of(p) == split]


def test_bad_split_value_names_the_row(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("clean,corrupted,answer,split\n1+1=,1+2=,2,train\n1+3=,1+4=,4,validation\n")
    with pytest.raises(DataError, match=r"bad.csv: row 2 .*column 'split' must be one of train, val, test"):
        _dm(tasks=[{"task": "bad", "source": str(f), "steps": 2}])


MIX = [
    {
        "mix": ["Add", "Sub"],
        "weights": [3, 1],
        "steps": 4,
        "n_train": 40,
        "n_val": 4,
        "params": {"lo": 0, "hi": 19},
    }
]


def test_mixed_stage_batches_hold_both_tasks_in_proportion():
    dm = TaskStreamDataModule(tasks=MIX, batch_size=8)
    dm.tokenizer = load_tokenizer("tiny-gpt2")
    dm.setup("fit")
    assert dm.names == ["Add", "Sub"] and dm.stage_names == ["Add+Sub"] and dm.task_steps() == [4]
    add = {r.clean for r in dm.task_pairs("Add", "train").rows}
    ds = dm.train_dataloader().dataset
    assert ds[0]["task_idx"] == 0 and len(ds[0]["batch"]) == 8  # training batches carry the stage index
    for k in range(10):
        rows = [ds.pairs.rows[i] for i in ds.rows(k)]
        n_add = sum(r.clean in add for r in rows)
        assert (n_add, len(rows) - n_add) == (6, 2)  # 3:1 of a batch of 8
        assert "+" in rows[0].clean and "-" in rows[-1].clean
    # validation stays per task
    assert [len(dm.task_pairs(n, "val")) for n in dm.names] == [4, 4]
    assert {it["task_idx"] for it in dm.val_dataloader()} == {0, 1}


@pytest.mark.parametrize(
    "stage, match",
    [
        ({"mix": ["Add", "Nope"], "steps": 2}, r"data.tasks\[0\] \(Add\+Nope\): unknown task 'Nope'"),
        ({"mix": ["Add", "Sub"], "weights": [1], "steps": 2}, "2 positive numbers"),
        ({"mix": ["Add", "Sub"], "task": "Add", "steps": 2}, "no `task`"),
        ({"mix": ["Add", {"task": "Sub", "bogus": 1}], "steps": 2}, "unknown key 'bogus'"),
        ({"mix": ["Add", "Sub"], "weights": [1, 100], "steps": 2}, "cannot hold every task"),
    ],
)
def test_bad_mixed_stages(stage, match):
    with pytest.raises((ConfigError, DataError), match=match):
        TaskStreamDataModule(tasks=[stage], batch_size=8)


def test_global_batch_size_is_divided_by_the_world():
    dm = TaskStreamDataModule(tasks=TASKS, global_batch_size=12)
    assert dm.device_batch_size() == 12
    dm._world = lambda: (0, 3, 2)  # noqa: SLF001 - 3 devices, 2 accumulated batches
    assert dm.device_batch_size() == 2
    dm._world = lambda: (0, 5, 1)
    with pytest.raises(
        ConfigError, match=r"global_batch_size \(12\) is not divisible by the number of devices \(5\)"
    ):
        dm.device_batch_size()
    with pytest.raises(ConfigError, match="not both"):
        TaskStreamDataModule(tasks=TASKS, batch_size=4, global_batch_size=8)


def test_test_split_is_held_out_and_served_by_the_test_loader():
    dm = _dm()
    splits = {s: {r.clean for r in dm.task_pairs("AddSub", s).rows} for s in ("train", "val", "test")}
    assert not (
        splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"]
    )
    items = [it for it in dm.test_dataloader() if it["task_idx"] == 0]
    assert sum(len(it["batch"]) for it in items) == len(splits["test"]) == 4
    assert torch.equal(
        items[0]["batch"].clean_ids, dm.task_pairs("AddSub", "test").batch(slice(0, 4)).clean_ids
    )
