"""The lines the circuit callback prints after each analysis, and its low-accuracy warning."""

from __future__ import annotations

import math
from typing import Any

from circuitft.callbacks.records import CircuitRecord
from circuitft.eap.summary import ACCURACY_FLOOR, MIN_ROWS, SE_LIMIT, low_accuracy_warning


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def task_line(rec: CircuitRecord) -> str:
    """``step 40 AddSub: faithfulness 0.93 | accuracy model 0.88, circuit 0.81 | 120 edges, 12% of the top
    edges changed since the previous analysis (random sets: 95%)`` (and a mark when the model does not do the task)."""
    m = rec.metrics
    faith = f"step {rec.step} {rec.task}: faithfulness {_num(m.get('faithfulness'))}"
    se = m.get("faithfulness_se", math.nan)
    if math.isfinite(se):
        faith += f" ± {1.96 * se:.2f}"
    if "metric_gap" in m:
        faith += f" (gap {_num(m.get('metric_gap'), '.3g')})"
    accuracy = f"accuracy model {_num(m.get('model_accuracy'))}, circuit {_num(m.get('circuit_accuracy'))}"
    accuracy += _rows(rec.n_examples)
    parts = [faith, accuracy]
    n_held = int(m.get("n_examples_heldout") or 0)
    if n_held:
        parts.append(
            f"held-out faithfulness {_num(m.get('faithfulness_heldout'))}, accuracy model "
            f"{_num(m.get('model_accuracy_heldout'))}, circuit {_num(m.get('circuit_accuracy_heldout'))}"
            + _rows(n_held)
        )
    edges = f"{int(m.get('n_edges', 0))} edges"
    change = rec.overlap.get("edge_change")
    if change is not None and math.isfinite(change):
        edges += f", {100 * change:.0f}% of the top edges changed since the previous analysis"
        chance = rec.overlap.get("edge_change_chance")
        if chance is not None and math.isfinite(chance):
            edges += f" (random sets: {100 * chance:.0f}%)"
    parts.append(edges)
    line = " | ".join(parts)
    if m.get("model_accuracy", math.nan) < ACCURACY_FLOOR:
        line += f" | model accuracy below {ACCURACY_FLOOR:.0%}"
    return line


def _rows(n: int) -> str:
    """`` on 32 rows``, flagged under :data:`MIN_ROWS`."""
    return f" on {n} rows" + (f" (< {MIN_ROWS})" if 0 < n < MIN_ROWS else "")


def small_gaps(records: list[CircuitRecord], step: int, limit: float = SE_LIMIT) -> str | None:
    """One warning naming the tasks of an analysis whose faithfulness has a standard error over the rows
    above ``limit`` (their clean-corrupted gap is too small against the row-to-row spread), or None."""
    small = [
        f"{r.task} (gap {r.metrics['metric_gap']:.3g}, faithfulness "
        f"{r.metrics.get('faithfulness', math.nan):.2f} ± {1.96 * r.metrics['faithfulness_se']:.2f})"
        for r in records
        if r.metrics.get("faithfulness_se", 0.0) > limit and "metric_gap" in r.metrics
    ]
    if not small:
        return None
    return (
        f"step {step}: the clean and corrupted runs differ too little against the row-to-row spread for "
        f"{', '.join(small)}: their faithfulness says little"
    )


def short_splits(dm: Any, names: list[str], splits: tuple[str, ...], n_examples: int) -> list[str]:
    """A warning per task and split with fewer rows than the callback's ``n_examples`` (task, split, asked,
    available)."""
    out = []
    for task in names:
        for split in splits:
            have = len(dm.task_pairs(task, split))
            if have < n_examples:
                out.append(
                    f"task {task}: split {split} has {have} rows, fewer than the CircuitCallback's "
                    f"n_examples={n_examples}: the circuit numbers on it rest on {have} rows"
                )
    return out


def low_accuracy(task: str, accuracy: float, step: int) -> str | None:
    """The warning for a task the model does not do at the end of its own training (None if it does);
    the same wording and floor as ``circuitft circuit`` and ``tasks check``."""
    hint = (
        f"task {task} at step {step}, the end of its training; check the answers in the task's rows, "
        "e.g. a missing leading space, or train longer"
    )
    return low_accuracy_warning(accuracy, task, hint=hint)
