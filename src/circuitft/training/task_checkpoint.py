"""``TaskCheckpoint``: Lightning's ModelCheckpoint that also saves at the end of every task of the stream.

Reading a checkpoint back (without Lightning) lives in :mod:`circuitft.models.checkpoint`.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from circuitft.training.checkpoint_io import use_atomic_checkpoints


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also saves at the end of every task of the stream (one task = one epoch),
    on top of ``every_n_train_steps``; ``save_last`` keeps ``last.ckpt`` for ``--ckpt_path last``.

    Args:
        save_at_task_end: also save a checkpoint at the end of every task (its circuits line up with it).
    """

    def __init__(self, *args: Any, save_at_task_end: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.save_at_task_end = save_at_task_end
        # public copy of the interval (ModelCheckpoint keeps it private), read by CircuitCallback
        self.every_n_steps = int(kwargs.get("every_n_train_steps") or 0)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        use_atomic_checkpoints(trainer.strategy)  # temp file + rename: no half-written checkpoint

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # No public API saves at epoch ends on top of every_n_train_steps (every_n_epochs excludes it);
        # these private methods were checked against lightning 2.6.6.
        if self.save_at_task_end and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
