"""ForgettingCurve: the model's accuracy on every held-out row of every task seen so far, a few times per stage.

Forgetting of task A while B is trained is otherwise two points (A's accuracy at the end of A and at the end
of B). This callback makes it a curve, cheaply (no circuits): at ``points`` evenly spaced optimizer steps
inside every stage (:func:`curve_steps`: with 4, a stage starting at ``s`` of length ``n`` is scored at
``s + n//4``, ``s + 2n//4``, ``s + 3n//4`` and its end ``s + n``; a stage starts where the previous one
ends) it scores the training model itself, with its adapter, by :func:`circuitft.eap.accuracy.model_accuracy`
(greedy teacher-forced exact match, the accuracy of the circuit records) on every row of the ``val`` and
``test`` splits (``split: heldout``) of each task seen so far, and

- writes one record per (step, task) to the run folder's ``accuracy.jsonl``
  (:attr:`circuitft.runfolder.RunFolder.accuracy`, a keyed :class:`~circuitft.runfolder.RecordLog`):
  ``step``, ``task``, ``trained_task``, ``accuracy``, ``n_correct``, ``n_rows``, ``splits``;
- logs ``forgetting/<task>/accuracy`` to TensorBoard.

Under DDP every rank scores its block of each split's rows (:class:`circuitft.callbacks.ranks.Ranks`) and
the counts are summed; rank 0 writes. Scoring runs in eval mode without gradients inside
``torch.random.fork_rng``, so it neither consumes the global RNG nor changes training. A record of a step is
written before that step's checkpoint is saved, and the log is keyed by (step, task), so a run resumed from a
checkpoint re-scores only the points after it (and the checkpoint's own step when its records are missing)
and leaves each record exactly once, with the numbers of an uninterrupted run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from circuitft.callbacks import board
from circuitft.callbacks.ranks import AnalysisFailed, Ranks
from circuitft.data.schedule import Schedule
from circuitft.eap.accuracy import model_accuracy
from circuitft.eap.attribute import model_device
from circuitft.errors import ConfigError
from circuitft.limits import MAX_BATCH_SIZE, check_count
from circuitft.names import check_name
from circuitft.runfolder import CIRCUITS, RecordLog, RunFolder

log = logging.getLogger("circuitft")
SPLIT_CHOICES: dict[str, tuple[str, ...]] = {"heldout": ("val", "test"), "val": ("val",), "test": ("test",)}
MAX_POINTS = 1000


def curve_steps(schedule: Schedule, points: int) -> list[int]:
    """The scored optimizer steps: ``points`` evenly spaced steps inside every stage, ascending, each once.

    Stage ``i`` runs from ``start`` (the previous stage's end, 0 for the first) to ``end``; its points are
    ``start + (k * (end - start)) // points`` for k = 1 .. points (its end included). Steps are unique (a
    stage shorter than ``points`` gives fewer) and step 0 (the untuned model) is never one.
    """
    if points <= 0:
        raise ConfigError(f"ForgettingCurve points must be positive, got {points}")
    out: set[int] = set()
    start = 0
    for end in schedule.ends:
        if end is None:
            raise ConfigError("ForgettingCurve needs the steps of every stage (the stream has none for one)")
        out.update(start + (k * (end - start)) // points for k in range(1, points + 1))
        start = end
    return sorted(s for s in out if s > 0)


class ForgettingCurve(Callback):
    """Score every seen task's held-out rows at ``points`` steps per stage (see the module docstring).

    Args:
        points: scored steps per stage, evenly spaced, the stage's end included (4: every quarter).
        split: ``heldout`` (the ``val`` and ``test`` rows together), ``val`` or ``test``.
        tasks: ``seen`` (the tasks of the stages trained so far, the current one included) or ``all``.
        batch_size: rows per forward pass (per GPU).
        accuracy: ``exact_match`` (every answer token) or ``first_token`` (the first answer token only).
        dirname: the folder under the run's log dir that holds ``accuracy.jsonl`` (the CircuitCallback's).
    """

    def __init__(
        self,
        points: int = 4,
        split: Literal["heldout", "val", "test"] = "heldout",
        tasks: Literal["seen", "all"] = "seen",
        batch_size: int = 16,
        accuracy: Literal["exact_match", "first_token"] = "exact_match",
        dirname: str = CIRCUITS,
    ) -> None:
        check_count(points, "ForgettingCurve points", MAX_POINTS)
        if split not in SPLIT_CHOICES:
            raise ConfigError(
                f"ForgettingCurve split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}"
            )
        if tasks not in ("seen", "all"):
            raise ConfigError(f"ForgettingCurve tasks must be 'seen' or 'all', got {tasks!r}")
        check_count(batch_size, "ForgettingCurve batch_size", MAX_BATCH_SIZE)
        if accuracy not in ("exact_match", "first_token"):
            raise ConfigError(
                f"ForgettingCurve accuracy must be 'exact_match' or 'first_token', got {accuracy!r}"
            )
        check_name(dirname, "ForgettingCurve dirname")
        self.points, self.split, self.tasks = points, split, tasks
        self.batch_size, self.accuracy, self.dirname = batch_size, accuracy, dirname
        self._log: RecordLog | None = None
        self._steps: set[int] = set()
        self._done: set[int] = set()

    @property
    def log_file(self) -> Path | None:
        """The run's ``accuracy.jsonl`` (known once the trainer has set the callback up)."""
        return self._log.path if self._log is not None else None

    # ---- when ---------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve ``accuracy.jsonl`` on every rank (``trainer.log_dir`` is a collective under DDP) and the
        scored steps from the stream's schedule."""
        dm = trainer.datamodule
        if not (hasattr(dm, "schedule") and hasattr(dm, "task_pairs")):
            raise ConfigError("ForgettingCurve needs circuitft's task stream (data: TaskStreamDataModule)")
        root = Path(trainer.log_dir or trainer.default_root_dir)
        self._log = RunFolder(root, self.dirname).accuracy_log()
        if stage == "fit":
            self._steps = set(curve_steps(dm.schedule(), self.points))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run resumed at a scored step scores it again only where ``accuracy.jsonl`` lacks its records
        (they are written before the step's checkpoint is saved, so normally they are there)."""
        step = trainer.global_step
        if step in self._steps:
            self._done.add(step)
            if not self._recorded(trainer, step):
                self._score(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Score at each curve step (before ModelCheckpoint saves the same weights)."""
        step = trainer.global_step
        if step in self._steps and step not in self._done:
            self._done.add(step)
            self._score(trainer, pl_module)

    def _chosen(self, trainer: L.Trainer, step: int) -> tuple[list[str], list[str]]:
        """(tasks scored at ``step``, tasks of the stage trained at ``step``)."""
        plan: Schedule = trainer.datamodule.schedule()
        tasks = plan.seen_at(step) if self.tasks == "seen" else plan.names
        return tasks, plan.trained_at(step)

    def _recorded(self, trainer: L.Trainer, step: int) -> bool:
        """Whether every task scored at ``step`` has a record (rank 0's answer, on every rank)."""
        tasks, _ = self._chosen(trainer, step)

        def look() -> bool:
            assert self._log is not None
            return set(tasks) <= {r["task"] for r in self._log.read() if r["step"] == step}

        try:
            return bool(Ranks().gather("*", look)[0])
        except AnalysisFailed:
            return False

    # ---- what ---------------------------------------------------------------------------------------
    def _score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        tasks, trained = self._chosen(trainer, step)
        dm = trainer.datamodule
        splits = SPLIT_CHOICES[self.split]
        ranks = Ranks()
        model = pl_module.model

        def count() -> dict[str, tuple[int, int]]:
            device = model_device(model)
            out = {}
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                for task in tasks:
                    hits = rows = 0
                    for split in splits:
                        mine = ranks.shard(dm.task_pairs(task, split))
                        if len(mine):
                            res = model_accuracy(
                                model, mine, batch_size=self.batch_size, accuracy=self.accuracy
                            )
                            hits, rows = hits + int(res.correct.sum()), rows + len(res.correct)
                    out[task] = (hits, rows)
            return out

        try:
            parts = ranks.gather("*", count)
            # rank 0 writes; a failure there (a full disk) reaches every rank, so none waits at a collective
            ranks.together("*", lambda: self._write(trainer, step, tasks, trained, parts))
        except AnalysisFailed as err:
            raise RuntimeError(f"ForgettingCurve at step {step} failed: {err}") from None

    def _write(
        self,
        trainer: L.Trainer,
        step: int,
        tasks: list[str],
        trained: list[str],
        parts: list[dict[str, tuple[int, int]]],
    ) -> None:
        """Rank 0: the records of ``step`` (counts summed over ranks) into ``accuracy.jsonl``, and TensorBoard."""
        if not trainer.is_global_zero:
            return
        records = []
        for task in tasks:
            hits, rows = (sum(p[task][i] for p in parts) for i in (0, 1))
            if not rows:
                continue  # a task without held-out rows has no curve
            records.append(
                {
                    "step": step,
                    "task": task,
                    "trained_task": "+".join(trained),
                    "accuracy": hits / rows,
                    "n_correct": hits,
                    "n_rows": rows,
                    "splits": list(SPLIT_CHOICES[self.split]),
                }
            )
        assert self._log is not None
        self._log.put(records)
        for writer in board.writers(trainer):
            for rec in records:
                writer.add_scalar(f"forgetting/{rec['task']}/accuracy", rec["accuracy"], step)
