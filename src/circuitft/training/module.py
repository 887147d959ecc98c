"""LoRAModule: a model spec wrapped with a peft LoRA adapter, trained with the loss on answer tokens only.

Logs ``train/loss`` and ``train/lr`` every step, ``train/task`` when the task changes and, at each validation,
``val/<task>/loss``
(mean cross-entropy per answer token) and ``val/<task>/acc`` (greedy exact match: the teacher-forced argmax
equals every answer token; ``accuracy: first_token`` scores the first answer token only) for each
validated task, plus ``val/loss`` and ``val/acc`` averaged over them. During fit every scalar goes to the
loggers under the global step after the optimizer step, the step of the checkpoint and the circuits of the
same weights (Lightning itself would log under the count of steps before it, and add ``epoch``).
Checkpoints hold only the adapter (trainable parameters) and the training state; the frozen base weights
are rebuilt from the spec in the hyper-parameters (see :mod:`circuitft.models.checkpoint`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from circuitft import models  # load_model, wrap_lora on first use: `fit --help` imports no transformers/peft
from circuitft.circuitlora.apply import PLAN_FILE, check_plannable, lr_scales, plan_for_run, wrap_planned
from circuitft.data.pairs import PairBatch
from circuitft.dtypes import DTYPES, MODEL_DTYPES
from circuitft.eap.answers import answer_logits, answer_loss, exact_match
from circuitft.eap.metrics import ACCURACIES
from circuitft.errors import ConfigError
from circuitft.models import DEFAULT_MODEL
from circuitft.models.checkpoint import CKPT_KEY, adapter_signature, check_adapter_state
from circuitft.quiet import verbose
from circuitft.training import optim


class LoRAModule(L.LightningModule):
    """LoRA fine-tuning of ``model`` over a task stream (see module docstring).

    Args:
        model: model spec: ``smollm2-135m`` (the embedded SmolLM2-135M-Instruct, the default), ``tiny-gpt2``
            and the other tiny random test models, a Hugging Face folder or a cached hub name.
        dtype: weights dtype of the base model (``float32``, ``bfloat16``, ``float16``).
        model_seed: seed of the tiny random models' weights.
        lora_r: LoRA rank of every adapted layer.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r); null: ``2 * lora_r``.
        lora_dropout: dropout on the LoRA input.
        target_modules: ``auto`` (GPT-NeoX: fused ``query_key_value``; GPT-2: ``c_attn,c_proj,c_fc``;
            others: every linear layer), ``all-linear``, or a list of module names.
        lr: AdamW learning rate of the first task (later tasks: see ``later_tasks_lr_scale``).
        weight_decay: AdamW weight decay.
        lr_schedule: learning-rate schedule inside each task: ``constant``, ``linear`` or ``cosine`` decay.
        warmup_steps: linear warm-up steps at the start of each task.
        fresh_optimizer_per_task: clear AdamW state when a task starts (the prior work's fresh Trainer).
        later_tasks_lr_scale: learning rate of tasks after the first relative to ``lr`` (1 = reset); a
            stage's own ``lr`` (data.tasks[i].lr) overrides it.
        accuracy: ``exact_match`` (every answer token right) or ``first_token`` (only the first answer
            token, as the prior work scored; numbers comparable with its accuracies).
        lora_plan: ``uniform`` (rank ``lora_r`` everywhere) or ``circuit`` (CircuitLoRA: ranks planned
            from a probe run's circuits, made when the run sets up; ``lora_r``/``lora_alpha`` are then unused).
        circuit_lora: options of the ``circuit`` plan (see :class:`circuitft.circuitlora.options.CircuitLoRAOptions`).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        dtype: str = "float32",
        model_seed: int = 0,
        lora_r: int = 16,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
        target_modules: str | list[str] = "auto",
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        fresh_optimizer_per_task: bool = True,
        later_tasks_lr_scale: float = 1.0,
        accuracy: str = "exact_match",
        lora_plan: str = "uniform",
        circuit_lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dtype not in MODEL_DTYPES:
            raise ConfigError(f"model.dtype must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}")
        optim.check_policy(lr, weight_decay, lr_schedule, warmup_steps, later_tasks_lr_scale)
        if accuracy not in ACCURACIES:
            raise ConfigError(f"model.accuracy must be one of {', '.join(ACCURACIES)}, got {accuracy!r}")
        self.save_hyperparameters()
        self.strict_loading = False  # checkpoints carry the adapter only
        if lora_plan not in ("uniform", "circuit"):
            raise ConfigError(f"model.lora_plan must be 'uniform' or 'circuit', got {lora_plan!r}")
        # transformers' "Loading weights" bar (a local load of a second or less) only with CIRCUITFT_VERBOSE=1
        loaded = models.load_model(model, DTYPES[dtype], seed=model_seed, progress=verbose())
        self.lora_plan_record: dict[str, Any] | None = None  # CircuitLoRA plan, once applied
        if lora_plan == "circuit":  # the adapter is planned in setup(), when the data is there
            self.circuit_lora = check_plannable(loaded.model, circuit_lora)
            self.model = loaded.model.requires_grad_(False)
        else:
            self.model = models.wrap_lora(
                loaded.model, lora_r, lora_alpha, lora_dropout, target_modules
            ).train()
        self.tokenizer = loaded.tokenizer
        self.tokenizer_dir = loaded.tokenizer_dir
        self.spec = model
        self.trainable_keys = {n for n, p in self.named_parameters() if p.requires_grad}
        self.val_loss = torch.nn.ModuleList()
        self.val_acc = torch.nn.ModuleList()
        self.task_names: list[str] = []
        self._opt_task = 0  # task whose optimizer state the optimizer holds
        self._rng_to_restore: dict[str, Any] | None = None
        self._logged_step = -1  # global step of the last training scalars
        self._step_lr = 0.0  # learning rate of the current optimizer step

    # ---- model ------------------------------------------------------------------------------------------
    def forward(self, batch: PairBatch) -> torch.Tensor:
        """Logits of the clean sequences (prompt + teacher-forced answer)."""
        return self.model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits

    def setup(self, stage: str) -> None:
        """One loss and one accuracy metric per task of the stream (identical on every rank)."""
        dm = self.trainer.datamodule if self.trainer is not None else None
        if self.hparams.get("lora_plan") == "circuit" and self.lora_plan_record is None:
            self._apply_circuit_plan(stage)
        names = list(getattr(dm, "names", []) or ["task"])
        if names != self.task_names:
            self.task_names = names
            self.val_loss = torch.nn.ModuleList(MeanMetric() for _ in names)
            self.val_acc = torch.nn.ModuleList(MeanMetric() for _ in names)

    def _apply_circuit_plan(self, stage: str) -> None:
        record = plan_for_run(self, self.trainer, stage)
        wrap_planned(self, record, PLAN_FILE)
        self.lora_plan_record = record
        self.trainable_keys = {n for n, p in self.named_parameters() if p.requires_grad}

    def _task_steps(self) -> list[int]:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "task_steps"):
            raise ConfigError("LoRAModule trains with a TaskStreamDataModule (data: tasks: ...)")
        return dm.task_steps()

    # ---- training ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss on the answer tokens of one batch of the current task."""
        b: PairBatch = batch["batch"]
        loss = answer_loss(self(b), b)
        n = len(b)
        self.log("train/loss", loss, prog_bar=True, batch_size=n, logger=False)  # the bar; loggers: below
        self._step_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        """Log ``train/loss`` and ``train/lr`` (and ``train/task`` when it changes) under the global step the
        optimizer step reached, as checkpoints, circuits and validation (and without Lightning's ``epoch``)."""
        step = self.trainer.global_step
        if step == self._logged_step:
            return  # still accumulating gradients
        self._logged_step = step
        scalars: dict[str, float] = {}
        dm = self.trainer.datamodule
        if hasattr(dm, "current_stage") and step == sum(self._task_steps()[: dm.current_stage()]) + 1:
            scalars["train/task"] = float(dm.current_task())  # at the first step of each task only
        if step % max(1, int(self.trainer.log_every_n_steps or 1)) == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            scalars.update({"train/loss": float(loss), "train/lr": self._step_lr})
        for logger in self.loggers if scalars else []:
            logger.log_metrics(scalars, step=step)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the adapter; the LR at each step follows :func:`optim.lr_multiplier` (per-task policy)."""
        hp = self.hparams
        params: Any = [p for p in self.parameters() if p.requires_grad]
        if self.lora_plan_record is not None:  # CircuitLoRA: critical modules may get a larger rate
            named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
            params = optim.param_groups(named, hp.lr, lr_scales(self))
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        steps = self._task_steps()
        dm = self.trainer.datamodule
        lrs = dm.stage_lrs() if hasattr(dm, "stage_lrs") else None
        mult = lambda s: optim.lr_multiplier(  # noqa: E731
            s, steps, hp.lr_schedule, hp.warmup_steps, hp.later_tasks_lr_scale, lrs, hp.lr
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, mult)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        """Restore the RNG state of a resumed checkpoint (dropout continues as if never interrupted)."""
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["cpu"])
            if torch.cuda.is_available() and self._rng_to_restore.get("cuda") is not None:
                torch.cuda.set_rng_state(self._rng_to_restore["cuda"])
            self._rng_to_restore = None

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """First batch of a new task: clear the optimizer state when the policy asks for a fresh optimizer.

        Keyed on the batch's task rather than on epoch hooks: Lightning skips ``on_train_epoch_start`` when it
        resumes from a checkpoint saved on the last batch of a task.
        """
        task = int(batch["task_idx"])
        if task != self._opt_task:
            if self.hparams.fresh_optimizer_per_task:
                for opt in self.trainer.optimizers:
                    optim.clear_state(opt)
            self._opt_task = task

    # ---- validation -------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, Any]) -> None:
        b: PairBatch = batch["batch"]
        logits = self(b)
        sel, tok, _ = answer_logits(logits, b)
        losses = F.cross_entropy(sel.float(), tok, reduction="none")
        i = batch["task_idx"]
        self.val_loss[i].update(losses)
        self.val_acc[i].update(exact_match(logits, b, self.hparams.get("accuracy") == "first_token"))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate per-task loss and exact-match accuracy."""
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """As validation."""
        self._eval_step(batch)

    def _log_eval(self, prefix: str) -> None:
        dm = self.trainer.datamodule
        tasks = dm.val_task_indices() if hasattr(dm, "val_task_indices") else range(len(self.task_names))
        values: dict[str, torch.Tensor] = {}
        losses, accs = [], []
        for i in tasks:
            loss, acc = self.val_loss[i].compute(), self.val_acc[i].compute()  # synced across ranks
            self.val_loss[i].reset()
            self.val_acc[i].reset()
            name = self.task_names[i]
            values[f"{prefix}/{name}/loss"], values[f"{prefix}/{name}/acc"] = loss, acc
            losses.append(loss)
            accs.append(acc)
        if losses:
            values[f"{prefix}/loss"], values[f"{prefix}/acc"] = (
                torch.stack(losses).mean(),
                torch.stack(accs).mean(),
            )
        # During fit the loggers get these under the global step after the optimizer step (the step of the
        # checkpoint and circuits saved with these weights), not Lightning's count of the steps before it.
        direct = prefix == "val" and self.trainer.state.fn == "fit"
        for key, value in values.items():
            shown = prefix == "val" and key in (f"{prefix}/loss", f"{prefix}/acc")
            self.log(key, value, prog_bar=shown, logger=not direct)
        if direct and values:
            scalars = {k: float(v) for k, v in values.items()}
            for logger in self.loggers:
                logger.log_metrics(scalars, step=self.trainer.global_step)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/<task>/{loss,acc}`` for each validated task and their means."""
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/<task>/{loss,acc}``."""
        self._log_eval("test")

    # ---- checkpoints ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the adapter weights; record the adapter's signature, optimizer task and RNG state."""
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k not in self.trainable_keys]:
            del sd[key]
        checkpoint[CKPT_KEY] = {
            "signature": adapter_signature(self),
            "optimizer_task": self._opt_task,
            "lora_plan": _plan_of_adapter(self.lora_plan_record),
            "rng": {
                "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model or adapter shape; restore the optimizer task and RNG."""
        check_adapter_state(checkpoint, self)
        extra = checkpoint.get(CKPT_KEY, {})
        if extra.get("lora_plan") != _plan_of_adapter(self.lora_plan_record):
            raise ConfigError("the checkpoint's LoRA plan (ranks, alphas, lr scale) differs from this run's")
        self._opt_task = int(extra.get("optimizer_task", 0))
        self._rng_to_restore = extra.get("rng")


def _plan_of_adapter(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What rebuilding a CircuitLoRA adapter needs (stored in checkpoints), or None for a uniform one."""
    if record is None:
        return None
    return {k: record[k] for k in ("r", "alpha", "rank_pattern", "alpha_pattern", "critical_lr_scale")}
