"""Per-run tables: one row per (step, task) with circuit change, and cross-task overlap at a step.

Change measures are the ones of :mod:`circuitft.eap.overlap` (section 3 of the prior work's definitions):
``edge_change = 1 - |T_a ∩ T_b| / k`` over the top-5% edges by |score| and ``node_change = |N_a Δ N_b| /
|N_a|`` over circuit nodes. ``*_prev`` compares with the task's previous analysis, ``*_first`` with the
task's first analysis after step 0 (the first fine-tuned checkpoint, as the prior work; NaN at step 0).
Cross-task overlap: ``edge_jaccard`` = Jaccard of the two tasks' top-5% edge sets by |score|
(:func:`~circuitft.eap.overlap.top_k_jaccard`), ``node_iou`` = Jaccard of their circuit nodes
(:func:`~circuitft.eap.overlap.node_jaccard`, logits left out).
"""

from __future__ import annotations

import math

import pandas as pd

from circuitft.analysis.measures import edge_change, top_jaccard
from circuitft.analysis.runs import EXTRA_COLUMNS, RunData
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.overlap import node_change, node_jaccard

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
    "edge_change_prev",
    "node_change_prev",
    "edge_change_first",
    "node_change_first",
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
            row["edge_change_prev"] = edge_change(prev, g, frac=frac) if prev is not None else math.nan
            row["node_change_prev"] = node_change(prev, g) if prev is not None else math.nan
            at_or_after = first is not None and step >= tuned[0]
            row["edge_change_first"] = edge_change(first, g, frac=frac) if at_or_after else math.nan
            row["node_change_first"] = node_change(first, g) if at_or_after else math.nan
            row["val_loss"] = run.val_value(step, task, "loss")
            row["val_acc"] = run.val_value(step, task, "acc")
            rows.append(row)
            prev = g
    table = pd.DataFrame(rows, columns=CIRCUIT_COLUMNS)
    return table.sort_values(["step", "task"], kind="stable").reset_index(drop=True)


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
                "edge_change": last["edge_change_first"],
                "node_change": last["node_change_first"],
            }
        )
    return pd.DataFrame(rows, columns=["task", "first_step", "last_step", "edge_change", "node_change"])


def overlap_matrices(
    run: RunData, step: int | None = None, frac: float = DEFAULT_TOP_FRAC
) -> tuple[int | None, pd.DataFrame, pd.DataFrame]:
    """(step, edge Jaccard, node IoU) between every two tasks analysed at ``step`` (default: the last step
    at which the most tasks were analysed)."""
    recs = run.records
    if recs.empty:
        return None, pd.DataFrame(), pd.DataFrame()
    if step is None:
        counts = recs.groupby("step")["task"].nunique()
        step = int(counts[counts == counts.max()].index.max())
    tasks = [t for t in run.tasks if ((recs["step"] == step) & (recs["task"] == t)).any()]
    tasks += [t for t in recs.loc[recs["step"] == step, "task"] if t not in tasks]
    graphs = {t: run.graph(step, t) for t in tasks}
    edge = pd.DataFrame(index=tasks, columns=tasks, dtype=float)
    node = pd.DataFrame(index=tasks, columns=tasks, dtype=float)
    for a in tasks:
        for b in tasks:
            edge.loc[a, b] = top_jaccard(graphs[a], graphs[b], frac=frac)
            node.loc[a, b] = node_jaccard(graphs[a], graphs[b])
    return step, edge, node
