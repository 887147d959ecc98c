"""Checks of a run's ``config.yaml`` as ``report`` reads it (written by ``fit``, but possibly edited by hand).

Only the keys the analysis uses are checked: ``model`` (a mapping whose ``model`` is a name) and
``data.tasks`` (a list of mappings whose ``name``/``task`` are names and ``steps`` a positive integer).
Each problem is one :class:`~circuitft.errors.DataError` naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circuitft.errors import DataError


def check_run_config(cfg: dict[str, Any], path: Path) -> None:
    """DataError naming ``path`` and the key when a key the analysis reads has the wrong type."""
    model = cfg.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise DataError(f"{path}: model must be a mapping of options, got {model!r}")
        spec = model.get("model")
        if spec is not None and not isinstance(spec, str):
            raise DataError(f"{path}: model.model must be a model name, got {spec!r}")
    data = cfg.get("data")
    if data is None:
        return
    if not isinstance(data, dict):
        raise DataError(f"{path}: data must be a mapping of options, got {data!r}")
    tasks = data.get("tasks")
    if tasks is None:
        return
    if not isinstance(tasks, list):
        raise DataError(f"{path}: data.tasks must be a list of tasks, got {tasks!r}")
    for i, task in enumerate(tasks):
        where = f"{path}: data.tasks[{i}]"
        if not isinstance(task, dict):
            continue  # a task given by name alone: no steps to read
        for key in ("name", "task"):
            if task.get(key) is not None and not isinstance(task[key], str):
                raise DataError(f"{where}.{key} must be a name, got {task[key]!r}")
        steps = task.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise DataError(f"{where}.steps must be a positive integer, got {steps!r}")
