"""What a run's earlier analyses say about the current one: anchors, forgetting, accuracy matrix, final numbers.

Everything is read back from the circuits folder (graphs and ``metrics.jsonl``), so a resumed run computes
the same numbers as an uninterrupted one. Accuracy here is the callback's own ``model_accuracy`` (greedy exact
match on the analysis examples of each task).

- anchors: top-5% edge Jaccard of a task's circuit against its previous analysis, its first analysis and
  its circuit at the end of its own training (``top_jaccard_previous|first|task_end``);
- forgetting of a finished task: ``(acc at its end - acc now) / acc at its end`` (relative drop);
- accuracy matrix: row ``i`` = accuracies at the end of stage ``i`` (a mixed stage is one row), one column
  per task;
- final numbers: final accuracy per task, their mean, backward transfer
  ``mean_{i < T} (R[T, i] - R[i, i])`` and final faithfulness per task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.graph import Graph


def graph_steps(root: Path, task: str) -> list[tuple[int, Path]]:
    """``(step, file)`` of every saved circuit of ``task``, by step."""
    found = []
    for p in root.glob(f"step*/{task}.safetensors"):
        digits = p.parent.name[4:]
        if digits.isdigit():
            found.append((int(digits), p))
    return sorted(found)


def anchor_overlap(root: Path, task: str, step: int, graph: Graph, task_end: int | None) -> dict[str, float]:
    """Overlap of ``graph`` (``task`` at ``step``) with the previous, first and task-end circuits on disk."""
    from circuitft.eap.io import read_safetensors
    from circuitft.eap.overlap import overlap, top_k_jaccard

    earlier = [(s, p) for s, p in graph_steps(root, task) if s < step]
    if not earlier:
        return {}
    cache: dict[int, Graph] = {}

    def load(s: int, p: Path) -> Graph:
        if s not in cache:
            cache[s] = read_safetensors(p, graph.cfg)
        return cache[s]

    prev = load(*earlier[-1])
    o = overlap(prev, graph)
    out = {k: float(o[k]) for k in ("edge_change", "node_change", "edge_jaccard", "node_jaccard")}
    out["top_jaccard_previous"] = top_k_jaccard(prev, graph, frac=DEFAULT_TOP_FRAC)
    out["top_jaccard_first"] = top_k_jaccard(load(*earlier[0]), graph, frac=DEFAULT_TOP_FRAC)
    at_end = [(s, p) for s, p in earlier if s == task_end]
    if at_end:
        out["top_jaccard_task_end"] = top_k_jaccard(load(*at_end[0]), graph, frac=DEFAULT_TOP_FRAC)
    return out


def _accuracy(rows: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
    return {(r["step"], r["task"]): float(r["metrics"].get("model_accuracy", math.nan)) for r in rows}


def forgetting(rows: list[dict[str, Any]], task: str, task_end: int, accuracy_now: float) -> float | None:
    """Relative accuracy drop of ``task`` since ``task_end`` (None if not analysed then; NaN if it was 0)."""
    at_end = _accuracy(rows).get((task_end, task))
    if at_end is None:
        return None
    return (at_end - accuracy_now) / at_end if at_end else math.nan


def accuracy_matrix(
    rows: list[dict[str, Any]],
    names: list[str],
    ends: list[int],
    done: int,
    groups: list[list[str]] | None = None,
) -> Any:
    """DataFrame: row ``i`` holds every task's accuracy at ``ends[i]``, the end of stage i (first ``done``
    stages; NaN where a task was not analysed). ``groups``: the tasks of each stage (default one task per
    stage, in ``names`` order); a row is named by its stage's tasks joined with ``+``."""
    import pandas as pd

    groups = groups or [[t] for t in names]
    acc = _accuracy(rows)
    data = [[acc.get((ends[i], t), math.nan) for t in names] for i in range(done)]
    return pd.DataFrame(data, index=["+".join(g) for g in groups[:done]], columns=names)


def final_metrics(
    rows: list[dict[str, Any]], names: list[str], ends: list[int], groups: list[list[str]] | None = None
) -> dict[str, float]:
    """Final accuracy and faithfulness per task, average accuracy and backward transfer (NaN if missing).

    ``ends`` has one end step per stage and ``groups`` the tasks of each stage (default: one task per
    stage); backward transfer averages ``acc(final) - acc(end of the task's stage)`` over the tasks of
    every stage but the last."""
    groups = groups or [[t] for t in names]
    final = ends[-1]
    acc = _accuracy(rows)
    faith = {(r["step"], r["task"]): float(r["metrics"].get("faithfulness", math.nan)) for r in rows}
    out: dict[str, float] = {}
    for t in names:
        out[f"final/{t}/accuracy"] = acc.get((final, t), math.nan)
        out[f"final/{t}/faithfulness"] = faith.get((final, t), math.nan)
    finals = [out[f"final/{t}/accuracy"] for t in names]
    out["final/average_accuracy"] = sum(finals) / len(finals)
    drops = [
        acc.get((final, t), math.nan) - acc.get((ends[i], t), math.nan)
        for i, group in enumerate(groups[:-1])
        for t in group
    ]
    out["final/backward_transfer"] = sum(drops) / len(drops) if drops else math.nan
    return out
