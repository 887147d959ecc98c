"""The sweep headline over pair runs A -> B: does circuit overlap predict forgetting?

Per run with a two-task stream A, B (``end A`` / ``end B`` as in :mod:`circuitft.analysis.runs`):

- ``jaccard`` (post hoc): Jaccard of the top-5% edges by |score| of A's circuit at the end of A and B's
  circuit at the end of B (:func:`circuitft.eap.overlap.top_k_jaccard`);
- ``jaccard_prospective``: the same with A's and B's circuits both at the end of A, before B is trained
  (NaN unless B was analysed at A's end step, e.g. with the callback's ``tasks: all``);
- beside each Jaccard ``*_chance`` (exact expected Jaccard of two random top-k edge sets of the graph,
  :mod:`circuitft.eap.chance`) and ``*_corrected`` = ``(J - E[J]) / (1 - E[J])``; ``split_half_jaccard_A`` /
  ``_B``: the records' split-half reliability ceiling at A's / B's end, when recorded;
- **inclusion**: ``included`` = A's circuit accuracy at the end of A on the circuit-discovery rows
  (``circuit_acc_A_end_A``, in-sample) >= the threshold (0.8, as the prior work) and every value defined;
- **outcome** on other rows: ``model_acc_A_end_A`` / ``model_acc_A_end_B`` are A's model accuracy on the
  held-out rows not used to find circuits (``model_accuracy_heldout``) when the records have it, else on the
  discovery rows (older runs; then inclusion and outcome share rows); ``outcome_rows`` says which
  (``heldout`` or ``discovery``). ``forgetting_abs`` = end A - end B (the primary outcome),
  ``forgetting_rel`` = ``forgetting_abs / end A``; ``circuit_forgetting_abs`` / ``_rel`` the same with A's
  circuit accuracy (held-out when recorded);
- forgetting curve (runs with ``accuracy.jsonl``, :mod:`circuitft.analysis.forgetting`): ``forgetting_auc``
  = the mean drop of A's accuracy below its end-of-A value over B's stage (trapezoid over the curve's points
  from the end of A to the end of B, divided by B's length), on the rows ``curve_splits`` names (every
  ``val`` and ``test`` row by default); NaN without the file;
- loss variant: ``jaccard_self`` = top-5% Jaccard of A's own circuit at the end of A and at the end of B,
  ``loss_change`` = ``(L_A(end B) - L_A(end A)) / L_A(end A)``, L_A the validation loss on A.

Fits (:data:`VARIANTS`, each over the included pairs where its two values are defined; ``left_out`` counts
the others): the line (:mod:`circuitft.analysis.fits`) with its uncertainty
(:func:`circuitft.analysis.uncertainty.correlation_uncertainty`: r and rho with Fisher intervals, cluster
bootstrap intervals, a permutation p within first tasks, power and a verdict) and the line compared with a
sigmoid by AIC and leave-one-out R² (``comparison``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from circuitft.analysis.fits import MIN_POINTS, compare_models, fit_line, fit_sigmoid
from circuitft.analysis.forgetting import CURVE_COLUMNS, curve_splits, forgetting_auc, pair_curve
from circuitft.analysis.measures import top_jaccard, top_jaccard_chance
from circuitft.analysis.runs import RunData
from circuitft.analysis.uncertainty import correlation_uncertainty
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.chance import corrected

THRESHOLD = 0.8
PAIR_COLUMNS = [
    "run",
    "model",
    "A",
    "B",
    "end_A",
    "end_B",
    "jaccard",
    "jaccard_chance",
    "jaccard_corrected",
    "jaccard_prospective",
    "jaccard_prospective_chance",
    "jaccard_prospective_corrected",
    "split_half_jaccard_A",
    "split_half_jaccard_B",
    "circuit_acc_A_end_A",
    "included",
    "outcome_rows",
    "model_acc_A_end_A",
    "model_acc_A_end_B",
    "forgetting_abs",
    "forgetting_rel",
    "circuit_acc_A_end_A_outcome",
    "circuit_acc_A_end_B",
    "circuit_forgetting_abs",
    "circuit_forgetting_rel",
    "jaccard_self",
    "jaccard_self_chance",
    "jaccard_self_corrected",
    "loss_A_end_A",
    "loss_A_end_B",
    "loss_change",
    "forgetting_auc",
    "curve_splits",
]
VARIANTS = {
    "headline": ("jaccard", "forgetting_abs"),
    "prospective": ("jaccard_prospective", "forgetting_abs"),
    "model_rel": ("jaccard", "forgetting_rel"),
    "circuit_rel": ("jaccard", "circuit_forgetting_rel"),
    "loss": ("jaccard_self", "loss_change"),
    "auc": ("jaccard", "forgetting_auc"),  # secondary: fitted only when some pair has a forgetting curve
}
OPTIONAL_VARIANTS = ("auc",)
# Columns written by releases before the forgetting names were split (absolute / relative): old name -> new
OLD_PAIR_NAMES = {"forgetting_model": "forgetting_rel", "forgetting_circuit": "circuit_forgetting_rel"}
INCLUSION_ROWS = "A's circuit accuracy at the end of A on the circuit-discovery rows (in-sample)"


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
    b_at_a = run.end_step(b, of_task=a)  # B's analysis at or before A's end
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
    gb_early = run.graph(b_at_a, b) if b_at_a is not None and b_at_a == end_a else None
    late = (
        run.graph(end_b_of_a, a)
        if end_b_of_a is not None and end_a is not None and end_b_of_a != end_a
        else None
    )
    chance = top_jaccard_chance(ga, frac) if ga is not None else math.nan
    for col, other in (("jaccard", gb), ("jaccard_prospective", gb_early), ("jaccard_self", late)):
        j = top_jaccard(ga, other, frac=frac) if ga is not None and other is not None else math.nan
        row[col], row[f"{col}_chance"], row[f"{col}_corrected"] = j, chance, corrected(j, chance)
    row["split_half_jaccard_A"] = run.value(end_a, a, "split_half_jaccard")
    row["split_half_jaccard_B"] = run.value(end_b_of_b, b, "split_half_jaccard")
    row["circuit_acc_A_end_A"] = run.value(end_a, a, "circuit_accuracy")
    heldout = math.isfinite(run.value(end_a, a, "model_accuracy_heldout")) and math.isfinite(
        run.value(end_b_of_a, a, "model_accuracy_heldout")
    )
    suffix = "_heldout" if heldout else ""
    row["outcome_rows"] = "heldout" if heldout else "discovery"
    # (column of the accuracy at the end of A, at the end of B, name prefix of the forgetting columns)
    outcomes = {
        "model_accuracy": ("model_acc_A_end_A", "model_acc_A_end_B", ""),
        "circuit_accuracy": ("circuit_acc_A_end_A_outcome", "circuit_acc_A_end_B", "circuit_"),
    }
    for metric, (col_a, col_b, prefix) in outcomes.items():
        before, after = run.value(end_a, a, metric + suffix), run.value(end_b_of_a, a, metric + suffix)
        row[col_a], row[col_b] = before, after
        row[f"{prefix}forgetting_abs"] = before - after
        row[f"{prefix}forgetting_rel"] = relative_drop(before, after)
    la = _loss_at(run, a, run.task_ends.get(a))
    lb = _loss_at(run, a, run.task_ends.get(b))
    row["loss_A_end_A"], row["loss_A_end_B"] = la, lb
    row["loss_change"] = -relative_drop(la, lb) if math.isfinite(relative_drop(la, lb)) else math.nan
    end_a_step, end_b_step = run.task_ends.get(a), run.task_ends.get(b)
    curve = pair_curve(run.accuracy, a, end_a_step, end_b_step)
    row["forgetting_auc"] = forgetting_auc(curve["step"], curve["accuracy"], end_a_step or 0, end_b_step or 0)
    row["curve_splits"] = curve_splits(curve)
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


def forgetting_curve_table(runs: Sequence[RunData]) -> pd.DataFrame:
    """A's forgetting curve of every pair run, long (:data:`~circuitft.analysis.forgetting.CURVE_COLUMNS`):
    one row per point from the end of A (``fraction_B`` 0) to the end of B (1); empty without curves."""
    parts = []
    for run in runs:
        if len(run.tasks) != 2 or len(run.stage_groups) != 2 or run.accuracy.empty:
            continue
        a, b = run.tasks
        curve = pair_curve(run.accuracy, a, run.task_ends.get(a), run.task_ends.get(b))
        if len(curve):
            parts.append(curve.assign(run=run.name, A=a, B=b)[CURVE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)


def fit_variant(pairs: pd.DataFrame, x: str, y: str, seed: int = 0) -> dict[str, Any]:
    """The line (top level), its uncertainty (top level: r and rho intervals, bootstrap, permutation p,
    verdict), the sigmoid and the line-vs-sigmoid comparison of ``y`` on ``x`` over the included pairs with
    both defined."""
    usable = pairs["included"].astype(bool) & pairs[x].notna() & pairs[y].notna() if len(pairs) else []
    sub = pairs[usable] if len(pairs) else pairs
    line = fit_line(sub[x], sub[y])
    out = {"x": x, "y": y, **line, "left_out": int(len(pairs) - len(sub))}
    unc = correlation_uncertainty(sub[x], sub[y], sub["A"], sub["B"], seed=seed)
    out.update({k: v for k, v in unc.items() if k not in out})
    sig = fit_sigmoid(sub[x], sub[y])
    out["sigmoid"] = {k: v for k, v in sig.items() if k != "r"}  # a curve's r is not an association measure
    out["comparison"] = compare_models(sub[x], sub[y])
    if y == "forgetting_auc" and len(sub):
        rows = sorted(set(sub["curve_splits"]))
        out["outcome_rows"] = "forgetting curve on " + (
            rows[0] if len(rows) == 1 else "mixed: " + ", ".join(rows)
        )
        out["inclusion_rows"] = INCLUSION_ROWS
    elif y.startswith(("forgetting", "circuit_forgetting")) and len(sub):
        rows = sorted(set(sub["outcome_rows"]))
        out["outcome_rows"] = rows[0] if len(rows) == 1 else "mixed: " + ", ".join(rows)
        out["inclusion_rows"] = INCLUSION_ROWS
    if line.get("skipped"):
        out["note"] = (
            f"fit skipped: {line['skipped']} ({len(sub)} usable pairs, at least {MIN_POINTS} needed)"
        )
    return _finite(out)


def _finite(v: Any) -> Any:
    """NaN and infinities as None, through dicts and lists (JSON has no NaN)."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fit_all(pairs: pd.DataFrame, threshold: float = THRESHOLD) -> dict[str, Any]:
    """``{"threshold", <variant>: fit, ...}`` (:data:`VARIANTS`); with several models, ``by_model`` instead."""
    models = list(dict.fromkeys(pairs["model"])) if len(pairs) else []
    if len(models) > 1:
        return {
            "threshold": threshold,
            "warning": f"{len(models)} models in one sweep; fitted separately: {', '.join(models)}",
            "by_model": {m: _fits(pairs[pairs["model"] == m]) for m in models},
        }
    return {"threshold": threshold, **_fits(pairs)}


def _fits(pairs: pd.DataFrame) -> dict[str, Any]:
    return {
        name: fit_variant(pairs, x, y)
        for name, (x, y) in VARIANTS.items()
        if name not in OPTIONAL_VARIANTS or pairs[y].notna().any()
    }
