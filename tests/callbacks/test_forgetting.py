"""ForgettingCurve: its steps, its records in a real (tiny) fit, an independent recount, resume, no effect on
training or the global RNG."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from circuitft.callbacks import ForgettingCurve
from circuitft.callbacks.forgetting import curve_steps
from circuitft.data.schedule import Schedule
from circuitft.errors import ConfigError
from circuitft.runfolder import RunFolder

PARAMS = {"lo": 1, "hi": 19}
TASKS = [  # FloorDiv answers are short: the tiny model at lr 0.05 gets some right, so the counts are not all 0
    {"task": "FloorDiv", "steps": 8, "n_train": 64, "n_val": 8, "n_test": 6, "params": PARAMS},
    {"task": "Abs", "steps": 12, "n_train": 64, "n_val": 8, "n_test": 6, "params": PARAMS},
]
STEPS = [2, 4, 6, 8, 11, 14, 17, 20]  # every quarter of the 8-step stage, then of the 12-step one


def test_curve_steps_by_hand() -> None:
    plan = Schedule(("A", "B"), (("A",), ("B",)), (8, 12))
    assert curve_steps(plan, 4) == STEPS
    assert curve_steps(plan, 3) == [2, 5, 8, 12, 16, 20]  # 8//3, 16//3, 8; 8 + 12//3, 8 + 24//3, 20
    assert curve_steps(plan, 1) == [8, 20]  # the stage ends only
    # a stage shorter than the points gives fewer; a stage's start (the previous end, or step 0) is no new point
    assert curve_steps(Schedule(("A", "B"), (("A",), ("B",)), (2, 3)), 4) == [1, 2, 3, 4, 5]
    mixed = Schedule(("A+B", "C"), (("A", "B"), ("C",)), (4, 4))
    assert curve_steps(mixed, 2) == [2, 4, 6, 8]
    with pytest.raises(ConfigError, match="points must be positive"):
        curve_steps(plan, 0)
    with pytest.raises(ConfigError, match="steps of every stage"):
        curve_steps(Schedule(("A",), (("A",),), (None,)), 4)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"points": 0}, "points must be at least 1"),
        ({"points": 2.5}, "points must be an integer"),
        ({"split": "train"}, "split must be one of heldout, val, test"),
        ({"tasks": "some"}, "tasks must be 'seen' or 'all'"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"accuracy": "bleu"}, "accuracy must be"),
        ({"dirname": "../x"}, "dirname"),
    ],
)
def test_bad_settings(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ForgettingCurve(**kwargs)


class RngWatch(Callback):
    """Placed before and after the ForgettingCurve: the global RNG state must not change between them."""

    def __init__(self, other: RngWatch | None = None) -> None:
        self.other, self.state, self.compared = other, None, 0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if self.other is None:
            self.state = torch.get_rng_state()
        else:
            assert torch.equal(self.other.state, torch.get_rng_state()), "the callback consumed the RNG"
            self.compared += 1


class Crash(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def _fit(root: Path, curve: bool = True, ckpt_path: str | None = None, crash: int | None = None):
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.training.module import LoRAModule

    L.seed_everything(0)
    module = LoRAModule(model="tiny-gpt2", lora_r=4, lr=0.05)
    dm = TaskStreamDataModule(tasks=TASKS, batch_size=8, seed=0)
    before = RngWatch()
    after = RngWatch(before)
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=3, save_last=True, save_top_k=-1)
    ]
    if curve:
        callbacks += [before, ForgettingCurve(points=4, batch_size=5), after]
    if crash is not None:
        callbacks.append(Crash(crash))
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(root, name="", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, dm, after


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("forgetting")
    full, dm, watch = _fit(tmp / "full")
    plain, _, _ = _fit(tmp / "plain", curve=False)
    with pytest.raises(RuntimeError, match="killed"):
        _fit(tmp / "cut", crash=14)  # the records of 8, 11 and 14 are written; the last checkpoint is at 12
    cut = RunFolder(tmp / "cut").accuracy_log()
    killed = cut.read()
    cut.write(
        [r for r in killed if r["step"] != 6]
    )  # as if the run died between scoring 6 and its checkpoint
    _fit(tmp / "cut", ckpt_path=str(tmp / "cut" / "ckpt" / "epoch=0-step=6.ckpt"))
    return {"tmp": tmp, "full": full, "plain": plain, "dm": dm, "watch": watch, "killed": killed}


def test_records_at_every_quarter_of_every_stage(runs: dict) -> None:
    records = RunFolder(runs["tmp"] / "full").accuracy_log().read()
    keys = [(r["step"], r["task"]) for r in records]
    assert keys == [(s, "FloorDiv") for s in STEPS[:4]] + [
        (s, t) for s in STEPS[4:] for t in ("Abs", "FloorDiv")
    ]
    for r in records:
        assert r["n_rows"] == 14 and r["splits"] == ["val", "test"]  # every val and test row
        assert r["accuracy"] == r["n_correct"] / 14
        assert r["trained_task"] == ("FloorDiv" if r["step"] <= 8 else "Abs")
    assert any(r["n_correct"] for r in records), "the tiny model gets some rows right (not a vacuous test)"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs["tmp"] / "full")).Reload()
    assert [e.step for e in acc.Scalars("forgetting/FloorDiv/accuracy")] == STEPS
    assert [e.step for e in acc.Scalars("forgetting/Abs/accuracy")] == STEPS[4:]
    by_key = {(r["step"], r["task"]): r["accuracy"] for r in records}
    assert [e.value for e in acc.Scalars("forgetting/Abs/accuracy")] == pytest.approx(
        [by_key[(s, "Abs")] for s in STEPS[4:]]
    )


@pytest.mark.filterwarnings(
    "ignore:Found keys that are in the model state dict"
)  # the adapter-only checkpoint
def test_accuracy_recounted_from_a_checkpoint(runs: dict) -> None:
    """The record at step 6 equals a recount on the step-6 checkpoint's weights by another route: whole-batch
    logits and :func:`circuitft.eap.answers.exact_match` (no length batching, no kept logits)."""
    from circuitft.eap.answers import exact_match
    from circuitft.training.module import LoRAModule

    module = LoRAModule.load_from_checkpoint(
        runs["tmp"] / "full" / "ckpt" / "epoch=0-step=6.ckpt", map_location="cpu", weights_only=False
    )
    module.eval()
    dm = runs["dm"]
    hits = rows = 0
    with torch.no_grad():
        for split in ("val", "test"):
            pairs = dm.task_pairs("FloorDiv", split)
            batch = pairs.batch(slice(0, len(pairs)))
            logits = module.model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
            hits += int(exact_match(logits, batch).sum())
            rows += len(pairs)
    rec = next(r for r in RunFolder(runs["tmp"] / "full").accuracy_log().read() if r["step"] == 6)
    assert (rec["n_correct"], rec["n_rows"]) == (hits, rows)


def test_resume_leaves_each_record_once_and_equal(runs: dict) -> None:
    full = RunFolder(runs["tmp"] / "full").accuracy_log().read()
    assert {r["step"] for r in runs["killed"]} == set(STEPS[:6])  # written up to the crash at 14
    resumed = RunFolder(runs["tmp"] / "cut").accuracy_log()
    lines = [line for _, line in resumed.lines()]
    assert len(lines) == len(full) and resumed.read() == full


def test_no_effect_on_training_or_the_rng(runs: dict) -> None:
    assert runs["watch"].compared == 20  # every optimizer step's batch end was checked
    a, b = runs["full"].model.state_dict(), runs["plain"].model.state_dict()
    lora = [k for k in a if "lora" in k]
    assert lora and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "adapter weights differ with the callback"


# ---- DDP: each rank scores a block of the rows, the counts are summed ---------------------------------------
def _score_once(out: Path) -> list[dict]:
    """Score the tiny untrained model at step 11 (both tasks seen) as the callback does, with a stand-in
    trainer; rank 0 writes ``out``."""
    from types import SimpleNamespace

    from circuitft.callbacks.ranks import Ranks
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.models import load_model
    from circuitft.runfolder import RecordLog

    torch.set_num_threads(1)
    loaded = load_model("tiny-gpt2", seed=0)
    # the random model always answers "1": right on the FloorDiv rows whose answer is 1, so counts are not all 0
    bias = torch.zeros(len(loaded.tokenizer))
    bias[loaded.tokenizer.convert_tokens_to_ids("1")] = 100.0
    loaded.model.get_output_embeddings().register_forward_hook(lambda mod, args, output: output + bias)
    dm = TaskStreamDataModule(tasks=TASKS, batch_size=8, seed=0)
    dm.tokenizer = loaded.tokenizer
    dm.setup("fit")
    rank = Ranks().rank
    trainer = SimpleNamespace(datamodule=dm, global_step=11, is_global_zero=rank == 0, loggers=[])
    cb = ForgettingCurve(batch_size=3)
    cb._log = RecordLog(out)
    cb._score(trainer, SimpleNamespace(model=loaded.model))
    return RecordLog(out).read()


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _score_once(Path(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ddp
def test_two_processes_score_the_same_counts_as_one(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two" / "accuracy.jsonl"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=True)
    from circuitft.runfolder import RecordLog

    two = RecordLog(out).read()
    one = _score_once(tmp_path / "one" / "accuracy.jsonl")
    assert [(r["step"], r["task"], r["n_rows"]) for r in one] == [(11, "Abs", 14), (11, "FloorDiv", 14)]
    assert one[1]["n_correct"] > 0  # not a vacuous comparison
    assert two == one  # 7 + 7 rows per rank, counts summed, written once by rank 0


def test_a_failed_write_stops_the_run_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk stays a full disk (the CLI prints it as one line, exit 2); another failure names the step."""
    import errno

    from circuitft.runfolder import RecordLog

    def full(self, records) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(RecordLog, "put", full)
    with pytest.raises(OSError) as err:
        _score_once(tmp_path / "accuracy.jsonl")
    assert err.value.errno == errno.ENOSPC

    def broken(self, records) -> None:
        raise ValueError("bad\nsecond line")

    monkeypatch.setattr(RecordLog, "put", broken)
    with pytest.raises(RuntimeError, match=r"^ForgettingCurve at step 11 failed: \*: ValueError: bad$"):
        _score_once(tmp_path / "accuracy.jsonl")
