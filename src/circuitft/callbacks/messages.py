"""The lines the circuit callback prints after each analysis, and its low-accuracy warning."""

from __future__ import annotations

import math

from circuitft.callbacks.records import CircuitRecord
from circuitft.eap.summary import ACCURACY_FLOOR, low_accuracy_warning


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def task_line(rec: CircuitRecord) -> str:
    """``step 40 AddSub: faithfulness 0.93 | accuracy model 0.88, circuit 0.81 | 120 edges, 12% of the top
    edges changed since the previous analysis (random sets: 95%)`` (and a mark when the model does not do the task)."""
    m = rec.metrics
    parts = [
        f"step {rec.step} {rec.task}: faithfulness {_num(m.get('faithfulness'))}",
        f"accuracy model {_num(m.get('model_accuracy'))}, circuit {_num(m.get('circuit_accuracy'))}",
    ]
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


def low_accuracy(task: str, accuracy: float, step: int) -> str | None:
    """The warning for a task the model does not do at the end of its own training (None if it does);
    the same wording and floor as ``circuitft circuit`` and ``tasks check``."""
    hint = (
        f"task {task} at step {step}, the end of its training; check the answers in the task's rows, "
        "e.g. a missing leading space, or train longer"
    )
    return low_accuracy_warning(accuracy, task, hint=hint)
