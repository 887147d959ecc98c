"""CircuitCallback inside a real (tiny) sequential fit: files, records, TensorBoard scalars, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from circuitft.callbacks import CircuitCallback, RecordLog
from circuitft.callbacks.records import CircuitRecord
from circuitft.eap.io import load_graph
from circuitft.errors import ConfigError

TASKS = [
    {"task": "AddSub", "steps": 4, "n_train": 16, "n_val": 4, "params": {"lo": 0, "hi": 9}},
    {"task": "AddSubInv", "steps": 4, "n_train": 16, "n_val": 4, "params": {"lo": 0, "hi": 9}},
]


def _fit(root: Path, ckpt_path: str | None = None, max_steps: int = -1, ckpt_every: int = 2, **cb_kwargs):
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.training.module import LoRAModule

    L.seed_everything(0)
    module = LoRAModule(model="tiny-gpt2", lora_r=4, lr=1e-3)
    dm = TaskStreamDataModule(tasks=TASKS, batch_size=4, seed=0)
    cb = CircuitCallback(n_examples=4, batch_size=4, ig_steps=2, top_frac=0.2, **cb_kwargs)
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=TensorBoardLogger(root, name="", version=0, default_hp_metric=False),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[
            ModelCheckpoint(
                dirpath=root / "ckpt", every_n_train_steps=ckpt_every, save_last=True, save_top_k=-1
            ),
            cb,
        ],
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, cb


def test_circuits_at_every_checkpoint_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    analysed: list[int] = []
    real = CircuitCallback._analyse

    def counting(self, trainer, pl_module):
        analysed.append(trainer.global_step)
        return real(self, trainer, pl_module)

    monkeypatch.setattr(CircuitCallback, "_analyse", counting)
    trainer, cb = _fit(tmp_path)
    assert analysed == [0, 2, 4, 6, 8], "each checkpoint step is analysed exactly once"
    root = Path(trainer.log_dir) / "circuits"
    records = RecordLog(root / "metrics.jsonl").read()
    keys = [(r["step"], r["task"]) for r in records]
    # Step 0 (base model) and the first task's steps analyse only the tasks seen so far.
    assert [t for s, t in keys if s in (0, 2, 4)] == ["AddSub"] * 3
    assert [t for s, t in keys if s in (6, 8)] == ["AddSub", "AddSubInv"] * 2
    for r in records:
        graph = load_graph(root / r["graph_path"])
        assert (graph.meta["step"], graph.meta["task"]) == (r["step"], r["task"])  # the record's own file
        assert graph.count_edges() == r["metrics"]["n_edges"]
        assert math.isfinite(r["metrics"]["kl_recovered_pct"]) and r["metrics"]["kl_recovered_pct"] <= 100
        assert 0 <= r["metrics"]["model_accuracy"] <= 1 and 0 <= r["metrics"]["circuit_accuracy"] <= 1
        assert 0 < r["metrics"]["n_edges"] <= 0.2 * 110 + 1
    later = [r for r in records if r["task"] == "AddSub" and r["step"] > 0]
    assert all("edge_change" in r["overlap"] for r in later), "overlap with the previous step is recorded"
    # TensorBoard got the scalars.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(trainer.log_dir))).Reload()
    tags = set(acc.Tags()["scalars"])
    assert "circuit/AddSub/faithfulness" in tags and "circuit/AddSubInv/circuit_accuracy" in tags
    assert "circuit_overlap/AddSub~AddSubInv/edge_jaccard" in tags
    assert [e.step for e in acc.Scalars("circuit/AddSub/kl_recovered_pct")] == [0, 2, 4, 6, 8]


def test_resume_does_not_duplicate(tmp_path: Path) -> None:
    full, _ = _fit(tmp_path / "full")
    _fit(tmp_path / "cut", max_steps=5)
    resumed, cb = _fit(tmp_path / "cut", ckpt_path=str(tmp_path / "cut" / "ckpt" / "last.ckpt"))
    a = RecordLog(Path(full.log_dir) / "circuits" / "metrics.jsonl").read()
    b = RecordLog(Path(resumed.log_dir) / "circuits" / "metrics.jsonl").read()
    assert [(r["step"], r["task"]) for r in a] == [(r["step"], r["task"]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["metrics"]["n_edges"] == y["metrics"]["n_edges"]
        assert x["metrics"]["faithfulness"] == pytest.approx(
            y["metrics"]["faithfulness"], abs=1e-4, nan_ok=True
        )


def test_record_log_replaces_by_key(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "m.jsonl")
    rec = CircuitRecord(3, "A", "A", "EAP-IG-inputs", "kl", 5, 4, "step3/A.safetensors", {"x": 1.0})
    log.put([rec])
    rec.metrics = {"x": 2.0}
    log.put([rec, CircuitRecord(1, "B", "A", "EAP", "kl", 5, 4, "p", {})])
    rows = log.read()
    assert [(r["step"], r["task"]) for r in rows] == [(1, "B"), (3, "A")]
    assert rows[1]["metrics"] == {"x": 2.0}
    assert all(json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines())


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"method": "nope"}, "EAP-IG-inputs"),
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"tasks": "some"}, "tasks"),
        ({"dtype": "int8"}, "bfloat16"),
        ({"sizes": [0.0, 0.5]}, r"sizes: .*\(0, 1\]"),
        ({"sizes": [1.5]}, r"sizes: .*\(0, 1\]"),
        ({"on_error": "ignore"}, "on_error"),
    ],
)
def test_bad_settings(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        CircuitCallback(**kwargs)


def test_first_token_accuracy_option(tmp_path: Path) -> None:
    """`accuracy: first_token` scores only the first answer token: never below exact match, and checked."""
    import torch

    from circuitft.data.tasks import make_pairs
    from circuitft.eap.evaluate import evaluate_circuits
    from circuitft.eap.graph import Graph
    from circuitft.models import load_model

    loaded = load_model("tiny-gpt2")
    pairs = make_pairs("AddSub", loaded.tokenizer, n=8, seed=0, lo=10, hi=19, prefix="")
    assert max(len(r.answer) for r in pairs.rows) > 1  # two-digit answers: at least some multi-token
    graph = Graph.from_model(loaded.model)
    full = graph.cfg.real_edge_mask
    exact, first = (
        evaluate_circuits(loaded.model, graph.cfg, [full], pairs, accuracy=a)[0]
        for a in ("exact_match", "first_token")
    )
    assert bool((first.model_correct >= exact.model_correct).all())
    assert torch.equal(exact.clean, first.clean)
    with pytest.raises(ConfigError, match="accuracy"):
        CircuitCallback(accuracy="top5")
