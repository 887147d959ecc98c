"""What a run's earlier analyses say about the current one: anchors, forgetting, accuracy matrix, final numbers.

Everything is read back from the circuits folder (graphs and ``metrics.jsonl``), so a resumed run computes
the same numbers as an uninterrupted one. Accuracy here is the callback's own ``model_accuracy`` (greedy exact
match on the analysis examples of each task).

- anchors: top-5% edge Jaccard of a task's circuit against its previous analysis, its first analysis and
  its circuit at the end of its own training (``top_jaccard_previous|first|task_end``), and the overlap
  measures against the previous analysis; each with ``*_chance`` (random sets of the same sizes) and
  ``*_corrected`` (:mod:`circuitft.eap.chance`);
- forgetting of a finished task: ``forgetting_abs`` = acc at its end - acc now (absolute drop) and
  ``forgetting_rel`` = that / acc at its end (relative drop), on the held-out rows
  (``model_accuracy_heldout``) when both analyses recorded them, else on the analysis examples;
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
from circuitft.eap.chance import corrected
from circuitft.eap.graph import Graph
from circuitft.eap.io import read_safetensors
from circuitft.eap.overlap import overlap, top_k_jaccard


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
    out = {
        f"{k}{tail}": float(o[f"{k}{tail}"])
        for k in ("edge_change", "node_change", "edge_jaccard", "node_jaccard")
        for tail in ("", "_chance", "_corrected")
    }
    chance = float(o["top_k_jaccard_chance"])  # two random top-k sets of this graph
    out["top_jaccard_chance"] = chance
    out["top_jaccard_previous"] = top_k_jaccard(prev, graph, frac=DEFAULT_TOP_FRAC)
    out["top_jaccard_first"] = top_k_jaccard(load(*earlier[0]), graph, frac=DEFAULT_TOP_FRAC)
    at_end = [(s, p) for s, p in earlier if s == task_end]
    if at_end:
        out["top_jaccard_task_end"] = top_k_jaccard(load(*at_end[0]), graph, frac=DEFAULT_TOP_FRAC)
    for ref in ("previous", "first", "task_end"):
        if f"top_jaccard_{ref}" in out:
            out[f"top_jaccard_{ref}_corrected"] = corrected(out[f"top_jaccard_{ref}"], chance)
    return out


def _accuracy(rows: list[dict[str, Any]], key: str = "model_accuracy") -> dict[tuple[int, str], float]:
    return {(r["step"], r["task"]): float(r["metrics"].get(key, math.nan)) for r in rows}


def forgetting(
    rows: list[dict[str, Any]], task: str, task_end: int, accuracy_now: float, key: str = "model_accuracy"
) -> float | None:
    """Relative accuracy drop (``forgetting_rel``) of ``task`` since ``task_end`` (None if not analysed
    then; NaN if it was 0); ``key`` the accuracy compared."""
    at_end = _accuracy(rows, key).get((task_end, task))
    if at_end is None:
        return None
    return (at_end - accuracy_now) / at_end if at_end else math.nan


def forgetting_metrics(
    rows: list[dict[str, Any]], task: str, task_end: int, metrics: dict[str, float]
) -> dict[str, float]:
    """``forgetting_abs`` and ``forgetting_rel`` of a finished task from this analysis' ``metrics``, on
    ``model_accuracy_heldout`` when this analysis and the one at the task end have it, else on
    ``model_accuracy`` (empty when the task was not analysed at its end)."""
    key = "model_accuracy"
    if math.isfinite(metrics.get("model_accuracy_heldout", math.nan)):
        at_end = _accuracy(rows, "model_accuracy_heldout").get((task_end, task), math.nan)
        key = "model_accuracy_heldout" if math.isfinite(at_end) else key
    now = float(metrics.get(key, math.nan))
    at_end = _accuracy(rows, key).get((task_end, task))
    if at_end is None:
        return {}
    return {"forgetting_abs": at_end - now, "forgetting_rel": forgetting(rows, task, task_end, now, key)}


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
    import pandas as pd  # here only: `circuitft fit --help` imports this module and stays without pandas

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
