"""The accuracy matrix of a task stream and the continual-learning summaries.

``R[i][j]`` is the value (model accuracy, circuit accuracy, faithfulness, ...) on task j at the end of task
i (the last analysis at or before task i's last step at which task j was analysed; see
:mod:`circuitft.analysis.runs`); ``b_j`` the value of the untuned model (step 0). With T tasks:

- ACC (GEM, Lopez-Paz and Ranzato 2017) = ``mean_j R[T][j]``;
- BWT (GEM) = ``1/(T-1) * sum_{j<T} (R[T][j] - R[j][j])`` (divisor T - 1, the tasks that can be forgotten);
- FWT (GEM) = ``1/(T-1) * sum_{j>1} (R[j-1][j] - b_j)``;
- forgetting (Chaudhry et al. 2018) = ``1/(T-1) * sum_{j<T} (max_{l<T} R[l][j] - R[T][j])``.

Cells that were not measured are NaN (e.g. a task not yet analysed under ``tasks: seen``); each mean is
over the terms that are defined, and the summary says how many (``*_terms``). All NaN when T < 2
(except ACC).

A mixed stage (``mix``) is one row (its tasks end together) and several columns: T counts stages, and a
task's own row is the row of its stage (:func:`stage_columns`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from circuitft.analysis.runs import RunData


def accuracy_matrix(run: RunData, column: str = "model_accuracy") -> tuple[pd.DataFrame, pd.Series]:
    """(R, b): R indexed by the stage trained through (rows, by stage name; a mixed stage is one row named
    by its tasks joined with +) and the task evaluated (columns).

    ``column`` is a record column, or ``val_acc`` / ``val_loss`` for the TensorBoard validation scalars
    (the last validation at or before task i's end; there is no untuned validation, so b is NaN).
    """
    tasks = run.tasks
    groups = run.stage_groups
    rows = pd.Index([name for name, _ in groups], name="after")
    r = pd.DataFrame(index=rows, columns=pd.Index(tasks, name="task"), dtype=float)
    b = pd.Series(index=tasks, dtype=float, name="untuned")
    for k, (_, group) in enumerate(groups):
        for j in tasks:
            r.iloc[k, tasks.index(j)] = _cell(run, group[0], j, column)
    for j in tasks:
        b[j] = math.nan if column.startswith("val_") else run.value(_untuned(run, j), j, column)
    return r, b


def _untuned(run: RunData, task: str) -> int | None:
    return 0 if ((run.records["step"] == 0) & (run.records["task"] == task)).any() else None


def _cell(run: RunData, i: str, j: str, column: str) -> float:
    end = run.task_ends.get(i)
    if end is None:
        return math.nan
    if column.startswith("val_"):
        val = run.val[(run.val["task"] == j) & (run.val["step"] <= end)] if not run.val.empty else run.val
        if val.empty:
            return math.nan
        return float(val.sort_values("step").iloc[-1][column[4:]])
    return run.value(run.end_step(j, of_task=i), j, column)


def summaries(
    r: pd.DataFrame, b: pd.Series | None = None, stage_of: list[int] | None = None
) -> dict[str, Any]:
    """ACC, BWT, FWT and forgetting of an accuracy matrix (see the module docstring).

    ``stage_of[j]``: the row (stage) that trains column ``j``'s task; default ``j`` (one task per stage).
    With mixed stages T is the number of stages: the sums run over the tasks of stages before the last
    (BWT, forgetting) or after the first (FWT), and the divisor is the number of defined terms.
    """
    m = r.to_numpy(dtype=float)
    t = m.shape[0]
    own = list(range(m.shape[1])) if stage_of is None else list(stage_of)
    base = np.full(m.shape[1], np.nan) if b is None else b.reindex(r.columns).to_numpy(dtype=float)
    out: dict[str, Any] = {"tasks": t}
    last = m[-1] if t else np.array([])
    acc_terms = last[np.isfinite(last)]
    out["ACC"], out["ACC_terms"] = _mean(acc_terms)
    bwt = [m[t - 1, j] - m[i, j] for j, i in enumerate(own) if i < t - 1]
    out["BWT"], out["BWT_terms"] = _mean(bwt)
    fwt = [m[i - 1, j] - base[j] for j, i in enumerate(own) if 1 <= i < t]
    out["FWT"], out["FWT_terms"] = _mean(fwt)
    forget = []
    for j, i in enumerate(own):
        if i >= t - 1:
            continue
        earlier = m[: t - 1, j]
        earlier = earlier[np.isfinite(earlier)]
        forget.append(earlier.max() - m[t - 1, j] if len(earlier) else math.nan)
    out["forgetting"], out["forgetting_terms"] = _mean(forget)
    return out


def stage_columns(run: RunData) -> list[int]:
    """The stage (row of :func:`accuracy_matrix`) that trains each task (column), for :func:`summaries`."""
    return [k for k, (_, group) in enumerate(run.stage_groups) for _ in group]


def _mean(values: Any) -> tuple[float, int]:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return (float(arr.mean()) if len(arr) else math.nan), int(len(arr))
