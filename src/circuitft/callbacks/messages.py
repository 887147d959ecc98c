"""The lines the circuit callback prints after each analysis, and its low-accuracy warning."""

from __future__ import annotations

import math

from circuitft.callbacks.records import CircuitRecord
from circuitft.eap.summary import ACCURACY_FLOOR, GAP_FLOOR, MIN_ROWS, low_accuracy_warning


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def task_line(rec: CircuitRecord) -> str:
    """``step 40 AddSub: faithfulness 0.93 | accuracy model 0.88, circuit 0.81 | 120 edges, 12% of the top
    edges changed since the previous analysis`` (and a mark when the model does not do the task)."""
    m = rec.metrics
    faith = f"step {rec.step} {rec.task}: faithfulness {_num(m.get('faithfulness'))}"
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
    parts.append(edges)
    line = " | ".join(parts)
    if m.get("model_accuracy", math.nan) < ACCURACY_FLOOR:
        line += f" | model accuracy below {ACCURACY_FLOOR:.0%}"
    return line


def _rows(n: int) -> str:
    """`` on 32 rows``, flagged under :data:`MIN_ROWS`."""
    return f" on {n} rows" + (f" (< {MIN_ROWS})" if 0 < n < MIN_ROWS else "")


def small_gaps(records: list[CircuitRecord], metric: str, step: int) -> str | None:
    """One warning naming the tasks of an analysis whose clean-corrupted metric gap is below the floor of
    ``metric`` (their faithfulness is a ratio of small numbers), or None."""
    floor = GAP_FLOOR.get(metric)
    if floor is None:
        return None
    small = [
        f"{r.task} ({r.metrics['metric_gap']:.3g})"
        for r in records
        if math.isfinite(r.metrics.get("metric_gap", math.nan)) and r.metrics["metric_gap"] < floor
    ]
    if not small:
        return None
    return (
        f"step {step}: the clean and corrupted runs differ by less than {floor:g} ({metric}) for "
        f"{', '.join(small)}: their faithfulness, a ratio over that gap, says little"
    )


def low_accuracy(task: str, accuracy: float, step: int) -> str | None:
    """The warning for a task the model does not do at the end of its own training (None if it does);
    the same wording and floor as ``circuitft circuit`` and ``tasks check``."""
    hint = (
        f"task {task} at step {step}, the end of its training; check the answers in the task's rows, "
        "e.g. a missing leading space, or train longer"
    )
    return low_accuracy_warning(accuracy, task, hint=hint)
