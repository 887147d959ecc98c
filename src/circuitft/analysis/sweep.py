"""The sweep headline over pair runs A -> B: does circuit overlap predict forgetting?

Per run with a two-task stream A, B (``end A`` / ``end B`` as in :mod:`circuitft.analysis.runs`):

- ``jaccard``: Jaccard of the top-5% edges by |score| of A's circuit at the end of A and B's circuit at the
  end of B (:func:`circuitft.eap.overlap.top_k_jaccard`);
- ``forgetting_circuit`` = ``(c_A(end A) - c_A(end B)) / c_A(end A)``, c_A the circuit accuracy of A's
  circuit on A (NaN when c_A(end A) is 0); ``forgetting_model`` the same with A's model accuracy;
- loss variant: ``jaccard_self`` = top-5% Jaccard of A's own circuit at the end of A and at the end of B,
  ``loss_change`` = ``(L_A(end B) - L_A(end A)) / L_A(end A)``, L_A the validation loss on A;
- ``included``: c_A(end A) >= the threshold (0.8, as the prior work) and every value defined.

Fits (:mod:`circuitft.analysis.fits`): ``headline`` = jaccard vs forgetting_circuit, ``model_accuracy`` =
jaccard vs forgetting_model, ``loss`` = jaccard_self vs loss_change, each over the included pairs (and, for
a variant, rows where its two values are defined); ``left_out`` counts the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from circuitft.analysis.fits import MIN_POINTS, fit_line, fit_sigmoid
from circuitft.analysis.measures import top_jaccard
from circuitft.analysis.runs import RunData
from circuitft.eap import DEFAULT_TOP_FRAC

THRESHOLD = 0.8
PAIR_COLUMNS = [
    "run",
    "model",
    "A",
    "B",
    "end_A",
    "end_B",
    "jaccard",
    "circuit_acc_A_end_A",
    "circuit_acc_A_end_B",
    "forgetting_circuit",
    "model_acc_A_end_A",
    "model_acc_A_end_B",
    "forgetting_model",
    "jaccard_self",
    "loss_A_end_A",
    "loss_A_end_B",
    "loss_change",
    "included",
]
VARIANTS = {
    "headline": ("jaccard", "forgetting_circuit"),
    "model_accuracy": ("jaccard", "forgetting_model"),
    "loss": ("jaccard_self", "loss_change"),
}


def relative_drop(before: float, after: float) -> float:
    """``(before - after) / before`` (NaN when before is 0 or either is NaN)."""
    if not (math.isfinite(before) and math.isfinite(after)) or before == 0:
        return math.nan
    return (before - after) / before


def pair_row(
    run: RunData, threshold: float = THRESHOLD, frac: float = DEFAULT_TOP_FRAC
) -> dict[str, Any] | None:
    """The pair numbers of one two-task run (None if the run's stream is not two tasks)."""
    if len(run.tasks) != 2 or len(run.stage_groups) != 2:  # a mixed stage of two tasks is not a pair
        return None
    a, b = run.tasks
    end_a = run.end_step(a)  # A's analysis at the end of A
    end_b_of_b = run.end_step(b)  # B's analysis at the end of B
    end_b_of_a = run.end_step(a, of_task=b)  # A's analysis at the end of B
    row: dict[str, Any] = {
        "run": run.name,
        "model": run.model,
        "A": a,
        "B": b,
        "end_A": end_a,
        "end_B": end_b_of_a,
    }
    ga = run.graph(end_a, a) if end_a is not None else None
    gb = run.graph(end_b_of_b, b) if end_b_of_b is not None else None
    row["jaccard"] = top_jaccard(ga, gb, frac=frac) if ga is not None and gb is not None else math.nan
    for short, col in (("circuit", "circuit_accuracy"), ("model", "model_accuracy")):
        before, after = run.value(end_a, a, col), run.value(end_b_of_a, a, col)
        row[f"{short}_acc_A_end_A"], row[f"{short}_acc_A_end_B"] = before, after
        row[f"forgetting_{short}"] = relative_drop(before, after)
    late = (
        run.graph(end_b_of_a, a)
        if end_b_of_a is not None and end_a is not None and end_b_of_a != end_a
        else None
    )
    row["jaccard_self"] = (
        top_jaccard(ga, late, frac=frac) if ga is not None and late is not None else math.nan
    )
    la = _loss_at(run, a, run.task_ends.get(a))
    lb = _loss_at(run, a, run.task_ends.get(b))
    row["loss_A_end_A"], row["loss_A_end_B"] = la, lb
    row["loss_change"] = -relative_drop(la, lb) if math.isfinite(relative_drop(la, lb)) else math.nan
    c = row["circuit_acc_A_end_A"]
    row["included"] = bool(math.isfinite(c) and c >= threshold)
    return row


def _loss_at(run: RunData, task: str, end: int | None) -> float:
    """A's validation loss at the last validation at or before ``end``."""
    if end is None or run.val.empty:
        return math.nan
    val = run.val[(run.val["task"] == task) & (run.val["step"] <= end)]
    return float(val.sort_values("step").iloc[-1]["loss"]) if len(val) else math.nan


def pairs_table(
    runs: Sequence[RunData], threshold: float = THRESHOLD, frac: float = DEFAULT_TOP_FRAC
) -> pd.DataFrame:
    """One row per pair run (runs whose stream is not two tasks are left out)."""
    rows = [r for r in (pair_row(run, threshold, frac) for run in runs) if r is not None]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def fit_variant(pairs: pd.DataFrame, x: str, y: str) -> dict[str, Any]:
    """Line (top level) and sigmoid fits of ``y`` on ``x`` over the included pairs with both defined."""
    usable = pairs["included"].astype(bool) & pairs[x].notna() & pairs[y].notna() if len(pairs) else []
    sub = pairs[usable] if len(pairs) else pairs
    line = fit_line(sub[x], sub[y])
    out = {"x": x, "y": y, **line, "left_out": int(len(pairs) - len(sub))}
    out["sigmoid"] = fit_sigmoid(sub[x], sub[y])
    if line.get("skipped"):
        out["note"] = (
            f"fit skipped: {line['skipped']} ({len(sub)} usable pairs, at least {MIN_POINTS} needed)"
        )
    return out


def fit_all(pairs: pd.DataFrame, threshold: float = THRESHOLD) -> dict[str, Any]:
    """``{"threshold", "headline", "model_accuracy", "loss"}``; with several models, ``by_model`` instead."""
    models = list(dict.fromkeys(pairs["model"])) if len(pairs) else []
    if len(models) > 1:
        return {
            "threshold": threshold,
            "warning": f"{len(models)} models in one sweep; fitted separately: {', '.join(models)}",
            "by_model": {m: _fits(pairs[pairs["model"] == m]) for m in models},
        }
    return {"threshold": threshold, **_fits(pairs)}


def _fits(pairs: pd.DataFrame) -> dict[str, Any]:
    return {name: fit_variant(pairs, x, y) for name, (x, y) in VARIANTS.items()}
