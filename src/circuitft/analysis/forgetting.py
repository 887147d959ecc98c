"""The forgetting curve of a run: ``accuracy.jsonl`` read as a table, A's curve over B and its area.

:class:`~circuitft.callbacks.ForgettingCurve` writes one record per (step, task) to the run folder's
``accuracy.jsonl`` (:attr:`circuitft.runfolder.RunFolder.accuracy`): the model's exact-match accuracy on every
held-out row of each task seen so far, at a few evenly spaced steps of every stage. For a pair run A -> B:

- :func:`pair_curve`: A's points from the end of A to the end of B, with ``fraction_B`` = (step - end A) /
  (end B - end A), 0 at the end of A and 1 at the end of B;
- :func:`forgetting_auc`: the mean drop of A's accuracy below its end-of-A value over B's stage, the
  trapezoid over those points divided by B's length (0: nothing forgotten; A's accuracy at the end of A:
  all of it forgotten at once; negative: A improved while B was trained).

Runs without the file (older runs, or runs without the callback) have an empty table and NaN areas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from circuitft.errors import DataError
from circuitft.runfolder import RunFolder

ACCURACY_COLUMNS = ["step", "task", "trained_task", "accuracy", "n_correct", "n_rows", "splits"]
CURVE_COLUMNS = ["run", "A", "B", "step", "fraction_B", "accuracy", "n_rows"]


def empty_accuracy() -> pd.DataFrame:
    """The accuracy table of a run without ``accuracy.jsonl``."""
    return pd.DataFrame(columns=ACCURACY_COLUMNS)


def read_accuracy(folder: Path) -> pd.DataFrame:
    """The run's ``accuracy.jsonl`` as a table (:data:`ACCURACY_COLUMNS`, ``splits`` joined by ``+``),
    sorted by (step, task); empty when the file does not exist. A damaged file raises one
    :class:`~circuitft.errors.DataError` naming the file and the line."""
    log = RunFolder(folder).accuracy_log()
    path = log.path
    if not path.exists():
        return empty_accuracy()
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    rows, seen = [], set()
    for n, rec in log.objects():
        rec = _record(path, n, rec)
        key = (rec["step"], rec["task"])
        if key in seen:
            raise DataError(f"{path}: line {n}: a second record of step {key[0]}, task {key[1]!r}")
        seen.add(key)
        rows.append(rec)
    if not rows:
        return empty_accuracy()
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS).sort_values(["step", "task"], ignore_index=True)


def _record(path: Path, n: int, rec: dict[str, Any]) -> dict[str, Any]:
    """One checked record of ``accuracy.jsonl`` (line ``n``, already a JSON object)."""
    where = f"{path}: line {n}"
    for key in ("step", "task", "accuracy", "n_rows"):
        if key not in rec:
            raise DataError(f"{where}: missing key {key!r}")
    for key in ("step", "n_rows", "n_correct"):
        v = rec.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise DataError(f"{where}: {key!r} must be a non-negative integer, got {v!r}")
    acc = rec["accuracy"]
    if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0.0 <= acc <= 1.0:
        raise DataError(f"{where}: 'accuracy' must be a number in [0, 1], got {acc!r}")
    if not isinstance(rec["task"], str) or not rec["task"]:
        raise DataError(f"{where}: 'task' must be a task name, got {rec['task']!r}")
    splits = rec.get("splits") or []
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise DataError(f"{where}: 'splits' must be a list of split names, got {splits!r}")
    return {
        "step": rec["step"],
        "task": rec["task"],
        "trained_task": str(rec.get("trained_task") or ""),
        "accuracy": float(acc),
        "n_correct": rec.get("n_correct"),
        "n_rows": rec["n_rows"],
        "splits": "+".join(splits),
    }


def pair_curve(accuracy: pd.DataFrame, a: str, end_a: int | None, end_b: int | None) -> pd.DataFrame:
    """A's records from the end of A to the end of B (both included), with ``fraction_B``; empty when an end
    is unknown or A has no record at the end of A."""
    cols = ["step", "fraction_B", "accuracy", "n_rows", "splits"]
    if end_a is None or end_b is None or end_b <= end_a or accuracy.empty:
        return pd.DataFrame(columns=cols)
    own = accuracy[(accuracy["task"] == a) & accuracy["step"].between(end_a, end_b)]
    if not (own["step"] == end_a).any():
        return pd.DataFrame(columns=cols)
    out = own.sort_values("step").assign(fraction_B=(own["step"] - end_a) / (end_b - end_a))
    return out[cols].reset_index(drop=True)


def forgetting_auc(steps: Sequence[float], accuracy: Sequence[float], end_a: int, end_b: int) -> float:
    """Mean drop of A's accuracy below its value at ``end_a`` over B's stage: the trapezoid of
    ``acc(end_a) - acc(t)`` over the points from ``end_a`` to ``end_b``, divided by ``end_b - end_a``.

    NaN unless the points include both ends (a run that has not finished B has no area yet).
    """
    pts = sorted(zip((float(s) for s in steps), (float(v) for v in accuracy), strict=True))
    if end_b <= end_a or not pts or pts[0][0] != end_a or pts[-1][0] != end_b:
        return math.nan
    base = pts[0][1]
    area = sum(
        (t1 - t0) * ((base - v0) + (base - v1)) / 2 for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False)
    )
    return area / (end_b - end_a)


def curve_splits(curve: pd.DataFrame) -> str:
    """The rows a curve was scored on (``val+test``; ``mixed: ...`` when its records differ; ``""`` if none)."""
    found = sorted(set(curve["splits"])) if len(curve) else []
    return found[0] if len(found) == 1 else ("mixed: " + ", ".join(found) if found else "")
