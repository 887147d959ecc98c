"""Per-run tables: one row per (step, task) with circuit change, and cross-task overlap at a step.

Change measures are the ones of :mod:`circuitft.eap.overlap` (section 3 of the prior work's definitions):
``edge_change = 1 - |T_a ∩ T_b| / k`` over the top-5% edges by |score| and ``node_change = |N_a Δ N_b| /
|N_a|`` over circuit nodes. ``*_prev`` compares with the task's previous analysis, ``*_first`` with the
task's first analysis after step 0 (the first fine-tuned checkpoint, as the prior work; NaN at step 0).
Cross-task overlap: ``edge_jaccard`` = Jaccard of the two tasks' top-5% edge sets by |score|
(:func:`~circuitft.eap.overlap.top_k_jaccard`), ``node_iou`` = Jaccard of their circuit nodes
(:func:`~circuitft.eap.overlap.node_jaccard`, logits left out).

Chance levels (:mod:`circuitft.eap.chance`): beside each change ``*_chance`` (the expected change of random
sets of the same sizes from the same graph) and ``*_corrected`` = change / chance (0 = the same set, 1 = as
much change as random sets); beside each Jaccard ``*_chance`` (exact expected Jaccard) and ``*_corrected`` =
``(J - E[J]) / (1 - E[J])`` (0 = chance, 1 = the same set). :func:`overlap_table` adds the node Jaccard at
matched density (top nodes by summed |edge score|, as many as the smaller circuit has) and each task's
split-half reliability (``split_half_jaccard``, when recorded: the highest overlap to expect at that number
of discovery rows). Held-out scores (``*_heldout``), ``metric_gap`` and ``n_examples_heldout`` are copied
from newer records (NaN in older ones).
"""

from __future__ import annotations

import math

import pandas as pd

from circuitft.analysis.measures import (
    edge_change,
    edge_change_chance,
    node_stats,
    top_jaccard,
    top_jaccard_chance,
)
from circuitft.analysis.runs import EXTRA_COLUMNS, RunData
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.chance import change_ratio, corrected
from circuitft.eap.graph import Graph
from circuitft.eap.overlap import matched_node_jaccard, node_jaccard

TAILS = ("", "_chance", "_corrected")
CHANGES = [
    f"{kind}_change_{ref}{tail}" for ref in ("prev", "first") for kind in ("edge", "node") for tail in TAILS
]

EXTRA = (*EXTRA_COLUMNS, "n_examples", "n_examples_heldout")  # NaN where a record (or a prior run) lacks them
CIRCUIT_COLUMNS = [
    "run",
    "step",
    "task",
    "trained_task",
    "task_end",
    "model_accuracy",
    "circuit_accuracy",
    "faithfulness",
    "kl_recovered_pct",
    "n_examples",
    "metric_gap",
    "faithfulness_se",
    "faithfulness_heldout",
    "kl_recovered_pct_heldout",
    "model_accuracy_heldout",
    "circuit_accuracy_heldout",
    "n_examples_heldout",
    "split_half_jaccard",
    "cpr",
    "cmd",
    "n_edges",
    "n_nodes",
    *CHANGES,
    "val_loss",
    "val_acc",
]


def circuits_table(run: RunData, frac: float = DEFAULT_TOP_FRAC) -> pd.DataFrame:
    """One row per (step, task) of ``run`` (``frac``: the top share of edges compared): metrics, circuit change vs the previous and the first analysis,
    ``task_end`` (this analysis stands for the end of its task) and the validation scalars at that step."""
    rows = []
    ends = {t: run.end_step(t) for t in run.tasks}
    for task in dict.fromkeys(run.records["task"]):
        recs = run.records[run.records["task"] == task].sort_values("step")
        steps = [int(s) for s in recs["step"]]
        tuned = [s for s in steps if s > 0]
        first = run.graph(tuned[0], task) if tuned else None
        prev = None
        for (_, rec), step in zip(recs.iterrows(), steps, strict=True):
            g = run.graph(step, task)
            row = {
                "run": run.name,
                "step": step,
                "task": task,
                "trained_task": rec["trained_task"],
                "task_end": ends.get(task) == step,
            }
            for col in ("model_accuracy", "circuit_accuracy", "faithfulness", "kl_recovered_pct", *EXTRA):
                row[col] = rec.get(col, math.nan)
            row["n_edges"] = rec["n_edges"] if math.isfinite(rec["n_edges"]) else float(g.count_edges())
            row["n_nodes"] = rec["n_nodes"] if math.isfinite(rec["n_nodes"]) else float(g.count_nodes())
            at_or_after = first is not None and step >= tuned[0]
            row.update(_changes("prev", prev, g, frac))
            row.update(_changes("first", first if at_or_after else None, g, frac))
            row["val_loss"] = run.val_value(step, task, "loss")
            row["val_acc"] = run.val_value(step, task, "acc")
            rows.append(row)
            prev = g
    table = pd.DataFrame(rows, columns=CIRCUIT_COLUMNS)
    return table.sort_values(["step", "task"], kind="stable").reset_index(drop=True)


def _changes(ref: str, before: Graph | None, g: Graph, frac: float) -> dict[str, float]:
    """``edge_change_<ref>`` and ``node_change_<ref>`` with chance levels (NaN without ``before``)."""
    if before is None:
        return {f"{kind}_change_{ref}{tail}": math.nan for kind in ("edge", "node") for tail in TAILS}
    e, ec = edge_change(before, g, frac=frac), edge_change_chance(g, frac)
    n = node_stats(before, g)
    return {
        f"edge_change_{ref}": e,
        f"edge_change_{ref}_chance": ec,
        f"edge_change_{ref}_corrected": change_ratio(e, ec),
        f"node_change_{ref}": n["node_change"],
        f"node_change_{ref}_chance": n["node_change_chance"],
        f"node_change_{ref}_corrected": n["node_change_corrected"],
    }


FIRST_LAST_COLUMNS = [
    "task",
    "first_step",
    "last_step",
    *[f"{kind}_change{tail}" for kind in ("edge", "node") for tail in TAILS],
]


def first_to_last(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: edge and node change from its first fine-tuned analysis to its last one."""
    rows = []
    for task, rows_t in table.groupby("task", sort=False):
        last = rows_t.sort_values("step").iloc[-1]
        tuned = rows_t.loc[rows_t["step"] > 0, "step"]
        rows.append(
            {
                "task": task,
                "first_step": int(tuned.min()) if len(tuned) else math.nan,
                "last_step": int(last["step"]),
                **{
                    f"{kind}_change{tail}": last[f"{kind}_change_first{tail}"]
                    for kind in ("edge", "node")
                    for tail in TAILS
                },
            }
        )
    return pd.DataFrame(rows, columns=FIRST_LAST_COLUMNS)


def _overlap_step(run: RunData, step: int | None) -> tuple[int | None, list[str]]:
    """The compared step (default: the last step at which the most tasks were analysed) and its tasks."""
    recs = run.records
    if recs.empty:
        return None, []
    if step is None:
        counts = recs.groupby("step")["task"].nunique()
        step = int(counts[counts == counts.max()].index.max())
    tasks = [t for t in run.tasks if ((recs["step"] == step) & (recs["task"] == t)).any()]
    tasks += [t for t in recs.loc[recs["step"] == step, "task"] if t not in tasks]
    return step, tasks


def overlap_matrices(
    run: RunData, step: int | None = None, frac: float = DEFAULT_TOP_FRAC
) -> tuple[int | None, pd.DataFrame, pd.DataFrame]:
    """(step, edge Jaccard, node IoU) between every two tasks analysed at ``step`` (default: the last step
    at which the most tasks were analysed)."""
    step, tasks = _overlap_step(run, step)
    if step is None:
        return None, pd.DataFrame(), pd.DataFrame()
    graphs = {t: run.graph(step, t) for t in tasks}
    edge = pd.DataFrame(index=tasks, columns=tasks, dtype=float)
    node = pd.DataFrame(index=tasks, columns=tasks, dtype=float)
    for a in tasks:
        for b in tasks:
            edge.loc[a, b] = top_jaccard(graphs[a], graphs[b], frac=frac)
            node.loc[a, b] = node_jaccard(graphs[a], graphs[b])
    return step, edge, node


OVERLAP_COLUMNS = [
    "run",
    "step",
    "A",
    "B",
    *[f"{m}{tail}" for m in ("edge_jaccard", "node_iou", "node_iou_matched") for tail in TAILS],
    "nodes_matched",
    "split_half_jaccard_A",
    "split_half_jaccard_B",
]


def overlap_table(run: RunData, step: int | None = None, frac: float = DEFAULT_TOP_FRAC) -> pd.DataFrame:
    """One row per ordered task pair at ``step`` (as :func:`overlap_matrices`): the edge Jaccard (top
    ``frac`` edges), node IoU and node IoU at matched density, each with chance level and corrected value,
    and each task's split-half Jaccard when recorded."""
    step, tasks = _overlap_step(run, step)
    rows = []
    graphs = {t: run.graph(step, t) for t in tasks} if step is not None else {}
    for a in tasks:
        for b in tasks:
            ga, gb = graphs[a], graphs[b]
            j, e = top_jaccard(ga, gb, frac=frac), top_jaccard_chance(ga, frac)
            n = node_stats(ga, gb)
            m = matched_node_jaccard(ga, gb)
            rows.append(
                {
                    "run": run.name,
                    "step": step,
                    "A": a,
                    "B": b,
                    "edge_jaccard": j,
                    "edge_jaccard_chance": e,
                    "edge_jaccard_corrected": corrected(j, e),
                    "node_iou": n["node_jaccard"],
                    "node_iou_chance": n["node_jaccard_chance"],
                    "node_iou_corrected": n["node_jaccard_corrected"],
                    "node_iou_matched": m["node_jaccard_matched"],
                    "node_iou_matched_chance": m["node_jaccard_matched_chance"],
                    "node_iou_matched_corrected": m["node_jaccard_matched_corrected"],
                    "nodes_matched": m["nodes_matched"],
                    "split_half_jaccard_A": run.value(step, a, "split_half_jaccard"),
                    "split_half_jaccard_B": run.value(step, b, "split_half_jaccard"),
                }
            )
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS)
