"""LoRAModule: answer-only loss, accuracy, task switching, optimizer policy, adapter-only checkpoints, resume."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from circuitft.data.stream import TaskStreamDataModule
from circuitft.eap.answers import answer_loss, exact_match
from circuitft.errors import ConfigError
from circuitft.models.checkpoint import check_adapter_state
from circuitft.training import LoRAModule, model_from_checkpoint
from circuitft.training.task_checkpoint import TaskCheckpoint

P = {"lo": 0, "hi": 9}
TASKS = [
    {"task": "AddSub", "steps": 3, "n_train": 16, "n_val": 4, "params": P},
    {"task": "AddSubInv", "steps": 3, "n_train": 16, "n_val": 4, "params": P},
]


class Record(L.Callback):
    """Per optimizer step: task, learning rate and the optimizer's step count before the update."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.on_train_batch_start(batch, batch_idx)  # the module's hook runs after callbacks'
        opt = trainer.optimizers[0]
        steps = [float(s["step"]) for s in opt.state.values() if "step" in s]
        self.rows.append(
            (trainer.global_step, batch["task_idx"], opt.param_groups[0]["lr"], max(steps, default=0))
        )


class Crash(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


def fit(root: Path, module_kw=None, tasks=TASKS, callbacks=(), ckpt_path=None, validate_on="seen"):
    L.seed_everything(0)
    module = LoRAModule(**{"model": "tiny-llama", "lora_r": 4, "lr": 1e-2, **(module_kw or {})})
    dm = TaskStreamDataModule(tasks=tasks, batch_size=4, validate_on=validate_on)
    ckpt = TaskCheckpoint(
        every_n_train_steps=2,
        save_last=True,
        save_top_k=-1,
        filename="step{step:06d}",
        auto_insert_metric_name=False,
    )
    trainer = L.Trainer(
        default_root_dir=root,
        logger=TensorBoardLogger(root, name="", version="", default_hp_metric=False),
        callbacks=[ckpt, *callbacks],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        val_check_interval=3,
    )
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module, trainer


def scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(root))
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_loss_only_on_answer_tokens(tiny):
    from circuitft.data.tasks import make_pairs

    lm = tiny("tiny-gpt2")
    b = make_pairs("AddSub", lm.tokenizer, 6, seed=1, **P).batch(slice(0, 6))
    logits = lm.model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits
    hf = lm.model(input_ids=b.clean_ids, attention_mask=b.attention_mask, labels=b.labels()).loss
    assert answer_loss(logits, b).item() == pytest.approx(hf.item(), rel=1e-5)
    # changing logits anywhere except the answer positions leaves the loss unchanged
    ex, pos, _ = b.answer_index()
    noisy = logits + torch.randn_like(logits) * 5
    noisy[ex, pos] = logits[ex, pos]
    assert answer_loss(noisy, b).item() == pytest.approx(answer_loss(logits, b).item(), rel=1e-6)


def test_exact_match_needs_every_answer_token(tiny):
    from circuitft.data.tasks import make_pairs

    lm = tiny("tiny-gpt2")
    b = make_pairs("Add", lm.tokenizer, 4, seed=0, lo=10, hi=99).batch(slice(0, 4))  # answers of 2-3 digits
    ex, pos, tok = b.answer_index()
    logits = torch.zeros(*b.clean_ids.shape, len(lm.tokenizer))
    logits[ex, pos, tok] = 1.0
    assert exact_match(logits, b).tolist() == [1.0] * 4
    logits[ex[-1], pos[-1], tok[-1]] = -1.0  # last token of the last example wrong
    assert exact_match(logits, b).tolist() == [1.0, 1.0, 1.0, 0.0]


def test_first_token_accuracy_scores_only_the_first_answer_token(tiny):
    from circuitft.data.tasks import make_pairs

    lm = tiny("tiny-gpt2")
    b = make_pairs("Add", lm.tokenizer, 4, seed=0, lo=10, hi=99).batch(slice(0, 4))
    ex, pos, tok = b.answer_index()
    assert (b.answer_len > 1).all()
    logits = torch.zeros(*b.clean_ids.shape, len(lm.tokenizer))
    logits[ex, pos, tok] = 1.0
    logits[
        ex[-1], pos[-1], tok[-1]
    ] = -1.0  # a later token of the last example wrong: first token still right
    assert exact_match(logits, b, first_token=True).tolist() == [1.0] * 4
    first = int((ex == 1).nonzero()[0])
    logits[ex[first], pos[first], tok[first]] = -1.0  # the first token of example 1 wrong
    assert exact_match(logits, b, first_token=True).tolist() == [1.0, 0.0, 1.0, 1.0]
    assert exact_match(logits, b).tolist() == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="model.accuracy must be one of exact_match, first_token"):
        LoRAModule(model="tiny-gpt2", lora_r=2, accuracy="first")


def test_stage_lr_overrides_the_later_tasks_scale(tmp_path):
    rec = Record()
    tasks = [TASKS[0], {**TASKS[1], "lr": 5e-3}]
    fit(tmp_path, {"later_tasks_lr_scale": 0.1}, tasks=tasks, callbacks=[rec])
    assert [r[2] for r in rec.rows] == pytest.approx([1e-2] * 3 + [5e-3] * 3)


def test_default_targets_per_family():
    def targets(name):
        m = LoRAModule(model=name, lora_r=2)
        return sorted({k.split(".lora_")[0].split(".")[-1] for k in m.trainable_keys})

    assert targets("tiny-neox") == ["query_key_value"]
    assert targets("tiny-gpt2") == ["c_attn", "c_fc", "c_proj"]
    assert targets("tiny-llama") == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def test_fit_switches_tasks_with_fresh_optimizer_and_scaled_lr(tmp_path):
    rec = Record()
    module, trainer = fit(tmp_path, {"later_tasks_lr_scale": 0.1}, callbacks=[rec])
    assert [r[1] for r in rec.rows] == [0, 0, 0, 1, 1, 1]  # task 1 starts at global step 3
    assert [r[2] for r in rec.rows] == pytest.approx([1e-2] * 3 + [1e-3] * 3)
    assert [r[3] for r in rec.rows] == [0, 1, 2, 0, 1, 2]  # fresh AdamW state for the second task
    logs = scalars(tmp_path)
    # validation covers the seen tasks: AddSubInv only once it has started; every scalar is logged under
    # the global step after the optimizer step (validation at the end of each 3-step task: steps 3 and 6)
    assert [s for s, _ in logs["val/AddSub/acc"]] == [3, 6]
    assert [s for s, _ in logs["val/AddSubInv/acc"]] == [6]
    assert [s for s, _ in logs["train/loss"]] == list(range(1, 7))
    assert logs["train/task"] == [(1, 0.0), (4, 1.0)]  # only where the task changes
    assert "epoch" not in logs


def test_optimizer_state_kept_when_not_fresh(tmp_path):
    rec = Record()
    fit(tmp_path, {"fresh_optimizer_per_task": False}, callbacks=[rec])
    assert [r[3] for r in rec.rows] == [0, 1, 2, 3, 4, 5]
    assert [r[2] for r in rec.rows] == pytest.approx([1e-2] * 6)  # reset (scale 1) by default


def test_checkpoint_holds_adapter_only_and_reloads(tmp_path):
    module, trainer = fit(tmp_path, tasks=TASKS[:1], validate_on="all")
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["state_dict"]) == module.trainable_keys
    assert all(".lora_" in k for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["model"] == "tiny-llama"
    loaded = model_from_checkpoint(path)
    ids = torch.tensor([[2, 5, 6, 7, 8]])
    module.eval()
    with torch.no_grad():
        assert torch.allclose(
            loaded.model(input_ids=ids).logits, module.model(input_ids=ids).logits, atol=1e-6
        )
    other = LoRAModule(model="tiny-llama", lora_r=8)
    with pytest.raises(ConfigError, match="does not fit"):
        check_adapter_state(ckpt, other)


def test_resume_after_crash_equals_uninterrupted(tmp_path):
    whole, _ = fit(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "crash", callbacks=[Crash(5)])
    assert (tmp_path / "crash" / "checkpoints" / "step000004.ckpt").exists()
    resumed, _ = fit(tmp_path / "crash", ckpt_path="last")
    a = {k: v for k, v in whole.state_dict().items() if k in whole.trainable_keys}
    b = {k: v for k, v in resumed.state_dict().items() if k in whole.trainable_keys}
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    la, lb = scalars(tmp_path / "whole"), scalars(tmp_path / "crash")
    assert [s for s, _ in lb["train/loss"]] == [s for s, _ in la["train/loss"]]
    assert [v for _, v in lb["train/loss"]] == pytest.approx([v for _, v in la["train/loss"]], rel=1e-5)
