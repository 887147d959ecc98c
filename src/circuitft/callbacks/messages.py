"""The lines the circuit callback prints after each analysis, and its low-accuracy warning."""

from __future__ import annotations

import math

from circuitft.callbacks.records import CircuitRecord

LOW_ACCURACY = 0.2  # below this model accuracy the model "does not do the task"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def task_line(rec: CircuitRecord) -> str:
    """``step 40 AddSub: faithfulness 0.93 | accuracy model 0.88, circuit 0.81 | 120 edges, 12% of the top
    edges changed since the previous analysis`` (and a mark when the model does not do the task)."""
    m = rec.metrics
    parts = [
        f"step {rec.step} {rec.task}: faithfulness {_num(m.get('faithfulness'))}",
        f"accuracy model {_num(m.get('model_accuracy'))}, circuit {_num(m.get('circuit_accuracy'))}",
    ]
    edges = f"{int(m.get('n_edges', 0))} edges"
    change = rec.overlap.get("edge_change")
    if change is not None and math.isfinite(change):
        edges += f", {100 * change:.0f}% of the top edges changed since the previous analysis"
    parts.append(edges)
    line = " | ".join(parts)
    if m.get("model_accuracy", math.nan) < LOW_ACCURACY:
        line += " | model accuracy below 20%"
    return line


def low_accuracy(task: str, accuracy: float, step: int) -> str:
    """The warning for a task the model does not do at the end of its own training."""
    return (
        f"task {task}: model accuracy {accuracy:.2f} at step {step}, the end of its training, is below "
        f"{LOW_ACCURACY:.0%}: the model does not do this task, so its circuit says little (check the answers "
        "in the task's rows, e.g. a missing leading space, or train longer)"
    )
