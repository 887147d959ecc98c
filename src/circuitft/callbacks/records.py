"""CircuitRecord: one (checkpoint step, task) circuit analysis, and the ``metrics.jsonl`` log that holds them.

A failed analysis is recorded as well: ``error`` holds the message, ``task`` the task it was working on
(``*`` when none), and the numbers are empty; readers skip records with an ``error``.

The log is keyed by ``(step, task)``: writing a record that already exists replaces it, so a resumed run
that re-analyses a step after a crash leaves each record exactly once. Every write rewrites the file
atomically (temp file + rename).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from circuitft.runfolder import RecordLog

__all__ = ["CircuitRecord", "RecordLog"]


@dataclass
class CircuitRecord:
    """What the circuit callback found for one task at one training step (read by reports)."""

    step: int
    task: str
    trained_task: str  # the stage being trained at that step: its task, or a mixed stage's tasks joined by +
    method: str
    metric: str
    ig_steps: int
    n_examples: int  # discovery rows: the circuit was found and scored in-sample on these
    graph_path: str  # relative to the circuits folder
    metrics: dict[str, float] = field(default_factory=dict)  # faithfulness, accuracies, sizes, forgetting
    # vs. the previous step of the same task (edge/node change, Jaccard), and top-5% edge Jaccard against
    # the anchors: top_jaccard_previous, top_jaccard_first (task's first analysis), top_jaccard_task_end
    overlap: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    size_curve: dict[str, dict[str, float]] = field(default_factory=dict)  # "0.05" -> faithfulness, n_edges
    # other task -> {"faithfulness", "relative"}: this task's circuit on the other task's data, relative to
    # the other task's own circuit there
    cross_task_faithfulness: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None  # set (and most fields empty) when the analysis failed
    trained_tasks: list[str] = field(default_factory=list)
    n_examples_heldout: int = 0  # held-out rows (test split) the circuit was also scored on  # every task of the stage trained at that step

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)
