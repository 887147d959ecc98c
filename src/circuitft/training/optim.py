"""Per-task optimizer policies: learning rate of each task, schedule inside a task, fresh optimizer state.

The learning rate at every optimizer step is a pure function of the global step and the task schedule
(steps per task), so a resumed run recomputes exactly the rates of an uninterrupted one. A "fresh optimizer
for each task" is implemented by clearing the optimizer state (AdamW moments and step counts) when a task
starts, which is what constructing a new AdamW gives, without swapping objects inside Lightning.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch

from circuitft.errors import ConfigError

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES = ("constant", "linear", "cosine")


def task_of_step(step: int, task_steps: Sequence[int]) -> tuple[int, int]:
    """``(task index, step inside that task)`` of global optimizer step ``step`` (0-based)."""
    bounds = [0]
    for n in task_steps:
        bounds.append(bounds[-1] + n)
    i = min(bisect.bisect_right(bounds, step) - 1, len(task_steps) - 1)
    return i, step - bounds[i]


def task_lr_scale(task_idx: int, later_tasks_lr_scale: float) -> float:
    """Multiplier of the base learning rate for task ``task_idx``: 1 for the first, the scale afterwards.

    ``later_tasks_lr_scale`` 1.0 resets every task to the base rate (prior work: 3e-4 reset); 0.1 cuts later
    tasks to a tenth (prior work: 3e-5).
    """
    return 1.0 if task_idx == 0 else float(later_tasks_lr_scale)


def shape_factor(step_in_task: int, n_steps: int, schedule: Schedule, warmup_steps: int) -> float:
    """Schedule inside one task: linear warm-up, then constant, linear decay to 0, or cosine decay to 0."""
    if warmup_steps > 0 and step_in_task < warmup_steps:
        return (step_in_task + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, n_steps - warmup_steps)
    progress = min(1.0, (step_in_task - warmup_steps) / span)
    if schedule == "linear":
        return 1.0 - progress

    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_multiplier(
    step: int,
    task_steps: Sequence[int],
    schedule: Schedule = "constant",
    warmup_steps: int = 0,
    later_tasks_lr_scale: float = 1.0,
    task_lrs: Sequence[float | None] | None = None,
    base_lr: float = 1.0,
) -> float:
    """Multiplier of the base learning rate ``base_lr`` at global optimizer step ``step``.

    ``task_lrs[i]``, when set, is task ``i``'s own learning rate: it replaces ``base_lr`` times the
    later-tasks scale for that task (the schedule inside the task still applies).
    """
    task, inside = task_of_step(step, task_steps)
    own = task_lrs[task] if task_lrs is not None and task < len(task_lrs) else None
    scale = own / base_lr if own is not None else task_lr_scale(task, later_tasks_lr_scale)
    return scale * shape_factor(inside, task_steps[task], schedule, warmup_steps)


def check_policy(lr: float, weight_decay: float, schedule: str, warmup_steps: int, scale: float) -> None:
    """Raise :class:`ConfigError` (one line) for an out-of-range optimizer setting."""
    if not lr > 0:
        raise ConfigError(f"model.lr must be positive, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"model.weight_decay must be >= 0, got {weight_decay}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"model.lr_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup_steps < 0:
        raise ConfigError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
    if not scale > 0:
        raise ConfigError(f"model.later_tasks_lr_scale must be positive, got {scale}")


def clear_state(optimizer: torch.optim.Optimizer) -> None:
    """Forget moments and step counts, as if ``optimizer`` had just been constructed."""
    optimizer.state = defaultdict(dict)


def param_groups(
    named_params: Iterable[tuple[str, torch.nn.Parameter]], lr: float, lr_scales: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per learning-rate multiplier in ``lr_scales`` (name -> multiplier,
    missing names 1.0), each with ``lr = lr * multiplier`` (a per-step schedule then scales every group)."""
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in named_params:
        groups.setdefault(float(lr_scales.get(name, 1.0)), []).append(p)
    return [{"params": ps, "lr": lr * scale, "lr_scale": scale} for scale, ps in sorted(groups.items())]
