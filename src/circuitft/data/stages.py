"""A stage of the task stream: its config (:class:`TaskConfig`), name and tasks (one, or a ``mix``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from circuitft.errors import ConfigError


@dataclass
class TaskConfig:
    """One stage of the stream.

    ``task`` is a built-in generator name (``circuitft tasks list``) or, with ``source``, the label of a
    CSV/JSONL file or ``datasets`` source. Give ``steps`` (optimizer steps) or ``epochs`` (passes over the
    training rows). ``params`` go to the generator (e.g. ``{lo: 0, hi: 9}``); ``seed`` defaults to the
    stream's ``seed`` plus the task's position. ``name`` (default ``task``) must be unique in the stream.
    ``n_train``/``n_val``/``n_test`` rows are drawn from the task's train/val/test split (``n_test``
    defaults to ``n_val``); a source file uses all its train rows and at most ``n_val``/``n_test`` of the
    others. ``lr``: this stage's learning rate (default: ``model.lr`` times ``model.later_tasks_lr_scale``
    after the first stage).

    A mixed stage gives ``mix`` instead of ``task``: a list of task names, or of mappings with this class's
    task fields (``task``, ``params``, ``source``, ``n_train``, ``n_val``, ``n_test``, ``seed``, ``name``;
    unset ones are taken from the stage). Its batches hold the tasks in the proportion of ``weights``
    (default equal shares); validation, circuits and accuracy stay per task.
    """

    task: str | None = None
    steps: int | None = None
    epochs: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    n_train: int = 1000
    n_val: int = 200
    n_test: int | None = None
    seed: int | None = None
    name: str | None = None
    lr: float | None = None
    mix: list[str | dict[str, Any]] | None = None
    weights: list[float] | None = None


_TASK_FIELDS = ("task", "params", "source", "n_train", "n_val", "n_test", "seed", "name")


def stage_name(stage: TaskConfig | dict[str, Any]) -> str:
    """A stage's name: ``name``, else ``task``, else its mixed tasks joined by ``+``."""
    get = stage.get if isinstance(stage, dict) else lambda k: getattr(stage, k)
    if get("name") or get("task"):
        return str(get("name") or get("task"))
    mix = get("mix") or []
    return "+".join(str(m.get("name") or m.get("task")) if isinstance(m, dict) else str(m) for m in mix)


def components(stage: TaskConfig, where: str) -> list[TaskConfig]:
    """The tasks of one stage (one, or those of ``mix``) as TaskConfigs."""
    if stage.mix is None:
        if not stage.task:
            raise ConfigError(f"{where}: give `task` (or `mix` for a mixed stage)")
        return [stage]
    if stage.task is not None or stage.source is not None:
        raise ConfigError(
            f"{where}: a mixed stage gives `mix` and no `task` or `source` (a --data.tasks override keeps the "
            'unset fields of the config\'s stage at the same position: add "task": null)'
        )
    if not isinstance(stage.mix, list) or not stage.mix:
        raise ConfigError(f"{where}: `mix` must be a non-empty list of tasks")
    if stage.weights is not None:
        if len(stage.weights) != len(stage.mix) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in stage.weights
        ):
            raise ConfigError(
                f"{where}: `weights` must be {len(stage.mix)} positive numbers, one per mixed task"
            )
    base = {k: getattr(stage, k) for k in _TASK_FIELDS if k not in ("task", "source", "name", "seed")}
    out = []
    for j, m in enumerate(stage.mix):
        if isinstance(m, str):
            m = {"task": m}
        if not isinstance(m, dict) or not m.get("task"):
            raise ConfigError(f"{where}: mix[{j}] must be a task name or a mapping with `task`")
        unknown = sorted(set(m) - set(_TASK_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: mix[{j}]: unknown key {unknown[0]!r} (valid: {', '.join(_TASK_FIELDS)})"
            )
        out.append(TaskConfig(**{**base, **m}))
    return out


def stage_from_dict(t: Any, i: int) -> TaskConfig:
    """A stage mapping from a config as a TaskConfig; one-line errors for a non-mapping or unknown key."""
    if not isinstance(t, dict):
        raise ConfigError(f"data.tasks[{i}] must be a mapping of task options, got {type(t).__name__}")
    valid = {f.name for f in dataclasses.fields(TaskConfig)}
    unknown = sorted(set(t) - valid)
    if unknown:
        raise ConfigError(
            f"data.tasks[{i}]: unknown option {unknown[0]!r} (valid: {', '.join(sorted(valid))})"
        )
    return TaskConfig(**t)
