"""The one map from stage to tasks to end step, used by the circuit callback, the report and the sweep plan.

A stream is a list of stages trained one after another; a stage trains one task or several at once
(``mix``). Every task ends where its stage ends: the cumulative optimizer steps of the stages up to and
including its own. A step belongs to the stage that trains it (a stage's last step included; step 0 to
the first stage).

:class:`Schedule` is built from a :class:`~circuitft.data.stream.TaskStreamDataModule` (its
``schedule()``, with the steps it computed) or from a run's config dict (:func:`from_config`, which reads
``data.tasks`` as ``circuitft fit`` would and converts ``epochs`` to steps where the training rows are known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from circuitft.data.stages import stage_name


@dataclass(frozen=True)
class Schedule:
    """Stages (by name), the tasks of each and each stage's optimizer steps (None: unknown)."""

    stages: tuple[str, ...]
    tasks: tuple[tuple[str, ...], ...]
    steps: tuple[int | None, ...]
    extra: tuple[str, ...] = ()  # tasks no stage trains (``data.analysis_tasks``: a shared sweep prefix)

    @property
    def names(self) -> list[str]:
        """Every task, in stage order (a mixed stage contributes each of its tasks), then the extra ones."""
        return [t for group in self.tasks for t in group] + list(self.extra)

    @property
    def ends(self) -> list[int | None]:
        """Global step at which each stage ends (None from the first stage of unknown length on)."""
        out: list[int | None] = []
        total: int | None = 0
        for s in self.steps:
            total = None if total is None or s is None else total + int(s)
            out.append(total)
        return out

    def task_ends(self) -> dict[str, int | None]:
        """Each task's end: the end of its stage."""
        return {t: end for group, end in zip(self.tasks, self.ends, strict=True) for t in group}

    def stage_of(self, task: str) -> int:
        """Index of the stage that trains ``task`` (ValueError if it is not in the stream)."""
        for i, group in enumerate(self.tasks):
            if task in group:
                return i
        raise ValueError(f"task {task!r} is not in the stream ({', '.join(self.names)})")

    def stage_at(self, step: int) -> int:
        """Index of the stage that trains optimizer step ``step`` (its end step included; 0: the first)."""
        for i, end in enumerate(self.ends):
            if end is None or step <= end:
                return i
        return len(self.stages) - 1

    def trained_at(self, step: int) -> list[str]:
        """The tasks trained at ``step`` (every task of its stage)."""
        return list(self.tasks[self.stage_at(step)])

    def seen_at(self, step: int) -> list[str]:
        """The tasks of the stages up to and including the one trained at ``step`` (step 0, the untuned
        model: the first task only)."""
        if step == 0:
            return self.names[:1]
        return [t for group in self.tasks[: self.stage_at(step) + 1] for t in group]


def stage_tasks(stage: dict[str, Any]) -> list[str]:
    """Task names of one stage mapping (its ``mix`` components, or the stage itself)."""
    if stage.get("mix"):
        return [str(m.get("name") or m.get("task")) if isinstance(m, dict) else str(m) for m in stage["mix"]]
    return [str(stage.get("name") or stage.get("task"))]


def config_stages(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage mappings of a config's ``data.tasks`` that name a task or a mix."""
    stages = (cfg.get("data") or {}).get("tasks") or []
    return [t for t in stages if isinstance(t, dict) and (t.get("name") or t.get("task") or t.get("mix"))]


def config_steps(cfg: dict[str, Any]) -> list[int | None]:
    """Optimizer steps of each stage (None where an ``epochs`` stage reads a data file of unknown size)."""
    data = cfg.get("data") or {}
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices")
    world = devices if isinstance(devices, int) and devices > 0 else 1
    accum = int(trainer.get("accumulate_grad_batches") or 1)
    per_step = data.get("global_batch_size") or int(data.get("batch_size") or 8) * world * accum
    out: list[int | None] = []
    for stage in config_stages(cfg):
        if stage.get("steps") is not None:
            out.append(int(stage["steps"]))
            continue
        rows = 0
        for part in stage.get("mix") or [stage]:
            part = part if isinstance(part, dict) else {}
            if (part.get("source") or stage.get("source")) is not None:
                rows = -1
                break
            rows += int(part.get("n_train") or stage.get("n_train") or 1000)
        epochs = stage.get("epochs")
        out.append(None if rows < 0 or epochs is None else max(1, math.ceil(float(epochs) * rows / per_step)))
    return out


def from_config(cfg: dict[str, Any]) -> Schedule:
    """The schedule of a run's config dict (``config.yaml`` or a sweep's fit config with its arguments)."""
    stages = config_stages(cfg)
    return Schedule(
        tuple(stage_name(s) for s in stages),
        tuple(tuple(stage_tasks(s)) for s in stages),
        tuple(config_steps(cfg)),
        tuple(
            str(t.get("name") or t.get("task"))
            for t in (cfg.get("data") or {}).get("analysis_tasks") or []
            if isinstance(t, dict)
        ),
    )
