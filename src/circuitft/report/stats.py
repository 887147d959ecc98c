"""The report page's statistics tables as HTML: the sweep fits with their uncertainty and verdicts, and
cross-task overlaps and circuit changes with their chance levels (:mod:`circuitft.eap.chance`)."""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from circuitft.names import slug

OUTCOME_ROWS = {
    "heldout": "A's accuracy on the held-out rows not used to find circuits (model_accuracy_heldout)",
    "discovery": "A's accuracy on the circuit-discovery rows (in-sample: these records have no held-out "
    "scores, so inclusion and outcome share rows)",
}


def interval(ci: Any, digits: int = 2) -> str:
    """``[lo, hi]`` of a 95% interval (``[n/a]`` when undefined)."""
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return "[n/a]"
    return f"[{float(ci[0]):+.{digits}f}, {float(ci[1]):+.{digits}f}]"


def fmt(v: Any, digits: int = 3) -> str:
    """A number as the page shows it (``n/a`` for NaN/None)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool | int):
        return str(v)
    return f"{float(v):.{digits}f}"


def fit_blocks(fits: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """model -> variant -> fit ("" as the model when the sweep has one model)."""
    return fits.get("by_model") or {"": {k: v for k, v in fits.items() if isinstance(v, dict)}}


def headline_html(fits: dict[str, Any]) -> str:
    """The fits table (r, rho, intervals, permutation p, power, AIC, LOO R²), the verdicts and the notes
    on inclusion, outcome rows and dependence."""
    blocks = fit_blocks(fits)
    parts: list[str] = []
    rows, verdicts = [], []
    for model, variants in blocks.items():
        for name, f in variants.items():
            cmp_ = f.get("comparison") or {}
            rows.append(
                f'<tr id="fit-{slug(model + "-" + name) if model else name}"><td>{html.escape(model)}</td>'
                f"<td>{html.escape(name)}</td><td>{html.escape(f['x'])} vs {html.escape(f['y'])}</td>"
                f"<td>{f['n']} ({f.get('n_first_tasks', 'n/a')} / {f.get('n_second_tasks', 'n/a')})</td>"
                f"<td>{fmt(f['r'], 2)} {interval(f.get('r_ci'))}</td>"
                f"<td>{fmt(f.get('rho'), 2)} {interval(f.get('rho_ci'))}</td>"
                f"<td>{interval(f.get('r_ci_cluster_first'))}</td><td>{interval(f.get('r_ci_cluster_both'))}</td>"
                f"<td>{fmt(f.get('p_perm'))}</td><td>{fmt(f.get('detectable_r'), 2)}</td>"
                f"<td>{f['left_out']}</td>"
                f"<td>{fmt(cmp_.get('aic_line'), 1)} / {fmt(cmp_.get('aic_sigmoid'), 1)}</td>"
                f"<td>{fmt(cmp_.get('loo_r2_line'), 2)} / {fmt(cmp_.get('loo_r2_sigmoid'), 2)}</td></tr>"
            )
            if f.get("verdict"):
                label = html.escape(f"{model} {name}" if model else name)
                verdicts.append(f"<li><b>{label}</b>: {html.escape(f['verdict'])}</li>")
    parts.append(
        '<table class="headline"><tr><th>model</th><th>fit</th><th>x vs y</th>'
        "<th>n pairs (first / second tasks)</th><th>Pearson r [95% Fisher, assumes independent pairs]</th>"
        "<th>Spearman rho [95% Fisher, Bonett-Wright SE]</th><th>r, cluster bootstrap over first tasks</th>"
        "<th>r, cluster bootstrap over both tasks</th><th>permutation p (within first task)</th>"
        "<th>|r| detectable (80% power)</th><th>left out</th><th>AIC line / sigmoid</th>"
        "<th>leave-one-out R² line / sigmoid</th></tr>" + "".join(rows) + "</table>"
        "<ul>" + "".join(verdicts) + "</ul>"
    )
    first = next(iter(next(iter(blocks.values())).values()), {})
    outcome = OUTCOME_ROWS.get(str(first.get("outcome_rows")), str(first.get("outcome_rows", "n/a")))
    parts.append(
        f"<p>Pairs A -> B. Inclusion: A's circuit accuracy at the end of A on the circuit-discovery rows "
        f"at least {fits['threshold']} (pairs below it, or with a value undefined, are left out). "
        f"Outcome (forgetting_abs = absolute drop, primary; forgetting_rel = relative drop): "
        f"{html.escape(outcome)}. Pairs sharing a first task are not independent: the Fisher intervals "
        "assume they are, the cluster bootstrap intervals do not; a relation is called only when every "
        "interval excludes 0. The sigmoid is compared with the line by AIC (lower is better; 2 more "
        "parameters) and leave-one-out R² (higher is better). Numbers: fit.json, tables/pairs.csv "
        "(every Jaccard there with its chance level and corrected value).</p>"
    )
    return "".join(parts)


def chance_text(table: pd.DataFrame | None, col: str) -> str:
    """``<col> chance level a-b`` over a table's ``<col>_chance`` column (what random sets would give)."""
    if table is None or f"{col}_chance" not in table or table[f"{col}_chance"].dropna().empty:
        return f"{col}: no chance level"
    c = table[f"{col}_chance"].dropna()
    lo, hi = float(c.min()), float(c.max())
    span = fmt(lo) if abs(hi - lo) < 5e-4 else f"{fmt(lo)}-{fmt(hi)}"
    return f"{col} of random sets of the same sizes: {span}"


def overlap_html(ov: pd.DataFrame, top: str) -> str:
    """The cross-task overlaps of one run (each task pair once) with chance levels and corrected values."""
    seen, rows = set(), []
    for _, r in ov.iterrows():
        if r["A"] == r["B"] or (r["B"], r["A"]) in seen:
            continue
        seen.add((r["A"], r["B"]))
        cells = [html.escape(str(r["A"])), html.escape(str(r["B"]))]
        for m in ("edge_jaccard", "node_iou", "node_iou_matched"):
            cells += [fmt(r[m]), fmt(r[f"{m}_chance"]), fmt(r[f"{m}_corrected"])]
        cells += [fmt(r["split_half_jaccard_A"]), fmt(r["split_half_jaccard_B"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["A", "B"]
    for m in (f"edge Jaccard ({top})", "node IoU", "node IoU, matched density"):
        head += [m, "chance", "corrected"]
    head += ["split-half Jaccard A", "split-half Jaccard B"]
    return (
        '<table class="overlap"><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table><p>chance = the expected Jaccard of random sets of the same sizes from "
        "the same graph (exact, hypergeometric); corrected = (J - chance) / (1 - chance): 0 = chance, "
        "1 = the same set. Matched density: each task's top nodes by summed |edge score|, as many as the "
        "smaller circuit has. Split-half Jaccard: the overlap of circuits found on two halves of one task's "
        "discovery rows, the ceiling a cross-task overlap can reach at that many rows (n/a: not recorded).</p>"
    )


def change_html(fl: pd.DataFrame, top: str) -> str:
    """First-to-last change per task with chance levels and change / chance."""
    rows = []
    for _, r in fl.iterrows():
        cells = [html.escape(str(r["task"])), fmt(r["first_step"]), fmt(r["last_step"])]
        for m in ("edge_change", "node_change"):
            cells += [fmt(r[m]), fmt(r[f"{m}_chance"]), fmt(r[f"{m}_corrected"])]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["task", "first step", "last step", f"edge change ({top})", "chance", "change / chance"]
    head += ["node change", "chance", "change / chance"]
    return (
        '<table class="change"><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def gap_text(table: pd.DataFrame) -> str:
    """The clean-corrupted gap (faithfulness's denominator) over a run's analyses, or why it is missing."""
    if "metric_gap" not in table or table["metric_gap"].dropna().empty:
        return "The clean-corrupted gap (faithfulness's denominator) was not recorded by this run."
    g = table["metric_gap"].dropna()
    return (
        f"The clean-corrupted gap it divides by (metric_gap) runs from {fmt(float(g.min()))} to "
        f"{fmt(float(g.max()))}: where it is small, faithfulness says little (tables/circuits.csv)."
    )
