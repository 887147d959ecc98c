"""The report page: a static HTML file with relative links only (opens from disk, no server, no network).

:class:`Page` collects the summary, figure blocks (PNG shown, SVG linked, one-line caption) and tables;
:func:`run_section` and :func:`sweep_section` draw the figures of one run and of a sweep.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from circuitft import plots
from circuitft.files import atomic_write_text
from circuitft.names import slug
from circuitft.plots import save_figure
from circuitft.report.stats import (
    chance_text,
    change_html,
    fit_blocks,
    fmt,
    gap_text,
    headline_html,
    interval,
    overlap_html,
)

SWEEP_TITLES = {
    "headline": "Does A/B circuit overlap predict forgetting of A? (absolute drop of model accuracy)",
    "prospective": "Does A/B overlap before B is trained predict forgetting of A?",
    "model_rel": "Does A/B circuit overlap predict forgetting of A? (relative drop of model accuracy)",
    "circuit_rel": "Does A/B circuit overlap predict forgetting of A? (relative drop of circuit accuracy)",
    "loss": "A's circuit drift against the change of A's loss",
}
STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1, h2, h3 { font-weight: 600; } figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; } table { border-collapse: collapse; font-size: 0.8em; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; } .note { color: #a04000; }
.headline td, .headline th { font-size: 1.1em; } details { margin: 0.5em 0; }
"""


class Page:
    """An HTML page under construction; figures are saved as they are added."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.n_figures = 0
        self.top = "top-5%"  # the compared edge share, as captions name it

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading."""
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def note(self, text: str) -> None:
        """A highlighted one-line note (skipped fits, missing data, warnings)."""
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, out: Path, fig: Any, name: str, caption: str) -> None:
        """Save ``fig`` as figures/<name>.png and .svg and show it with ``caption``."""
        save_figure(fig, out / "figures" / name)
        self.n_figures += 1
        src = html.escape(f"figures/{name}.png")
        svg = html.escape(f"figures/{name}.svg")
        self.parts.append(
            f'<figure><a href="{svg}"><img src="{src}" alt="{html.escape(caption)}"></a>'
            f'<figcaption>{html.escape(caption)} (<a href="{svg}">SVG</a>)</figcaption></figure>'
        )

    def summary(
        self,
        runs: list[Any],
        models: list[str],
        per_run: list[dict[str, Any]],
        fits: dict[str, Any] | None,
        warnings: list[str],
    ) -> None:
        """The top of the page: runs, models, tasks and the headline numbers."""
        self.heading(self.title, 1)
        tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
        items = [
            f"<li>runs: {len(runs)} ({html.escape(', '.join(r.name for r in runs[:12]))}"
            f"{', ...' if len(runs) > 12 else ''})</li>",
            f"<li>model{'s' if len(models) > 1 else ''}: {html.escape(', '.join(models))}</li>",
            f"<li>tasks: {html.escape(', '.join(tasks))}</li>",
        ]
        self.parts.append("<ul>" + "".join(items) + "</ul>")
        for w in warnings:
            self.note(f"warning: {w}")
        if fits is not None:
            self._headline(fits)
        rows = []
        for info in per_run[:12]:
            s = info["summaries"]["model_accuracy"]
            rows.append(
                f"<tr><td>{html.escape(info['run'].name)}</td><td>{fmt(s['ACC'])}</td><td>{fmt(s['BWT'])}</td>"
                f"<td>{fmt(s['FWT'])}</td><td>{fmt(s['forgetting'])}</td></tr>"
            )
        self.parts.append(
            '<table class="headline" id="continual-summary"><tr><th>run</th><th>ACC</th><th>BWT</th>'
            "<th>FWT</th><th>forgetting (Chaudhry, absolute)</th></tr>" + "".join(rows) + "</table>"
            "<p>Model accuracy, GEM ACC / BWT (divisor T-1) / FWT and Chaudhry forgetting; the end of task i is "
            "the last circuit analysis at or before its last step. Other metrics: tables/continual.csv.</p>"
        )

    def _headline(self, fits: dict[str, Any]) -> None:
        self.parts.append(headline_html(fits))
        for model, variants in fit_blocks(fits).items():
            for name, f in variants.items():
                if f.get("note"):
                    self.note(f"{model + ' ' if model else ''}{name}: {f['note']}")

    def tables(self, tables: dict[str, pd.DataFrame], fits: dict[str, Any] | None) -> None:
        """Every table (collapsed), with a link to its CSV."""
        self.heading("Tables")
        for name, table in tables.items():
            shown = table if len(table) <= 500 else table.head(500)
            more = "" if len(table) <= 500 else f" (first 500 of {len(table)} rows)"
            self.parts.append(
                f'<details><summary><a href="tables/{name}.csv">tables/{name}.csv</a>{more}</summary>'
                + shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0)
                + "</details>"
            )
        if fits is not None:
            self.parts.append(
                '<p><a href="fit.json">fit.json</a>: every fit with r, R², slope, intercept, n, the '
                "intervals, the permutation p-value, the verdict and the line-vs-sigmoid comparison.</p>"
            )

    def write(self, path: Path) -> None:
        """Write the page (atomically)."""
        body = "\n".join(self.parts)
        text = (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
            f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
        )
        atomic_write_text(path, text)


# ---- sections -------------------------------------------------------------------------------------------
def run_section(page: Page, out: Path, info: dict[str, Any], *, max_edges: int = 300) -> None:
    """The figures of one run (figures 1-7 of the issue: curves, change, matrix, overlap, size, diagrams)."""
    run, table = info["run"], info["table"]
    key = slug(run.name)
    page.heading(f"Run {run.name}")
    ends = [run.task_ends[t] for t in run.tasks[:-1] if run.task_ends.get(t) is not None]
    page.parts.append(
        f"<p>{html.escape(run.layout)} run, model {html.escape(run.model)}; tasks "
        + ", ".join(f"{html.escape(t)} (ends at step {fmt(run.task_ends.get(t))})" for t in run.tasks)
        + "</p>"
    )
    page.figure(
        out,
        plots.metric_over_steps(
            table,
            columns=["model_accuracy", "circuit_accuracy"],
            ylabel="accuracy",
            title=f"{run.name}: accuracy",
            boundaries=ends,
            labels=["model", "circuit"],
        ),
        f"{key}_accuracy",
        "Accuracy per task over steps: model solid, circuit dashed; grey lines are task boundaries.",
    )
    page.figure(
        out,
        plots.metric_over_steps(
            table,
            columns=["faithfulness", "faithfulness_heldout"],
            ylabel="normalised faithfulness",
            title=f"{run.name}: normalised faithfulness",
            boundaries=ends,
            labels=["discovery rows", "held-out rows"],
        ),
        f"{key}_faithfulness",
        "Normalised faithfulness per task (1 = the circuit recovers the full model's metric, 0 = the "
        "corrupted run): solid on the rows that found the circuit (in-sample), dashed on held-out rows when "
        f"recorded. {gap_text(table)}",
    )
    page.figure(
        out,
        plots.metric_over_steps(
            table,
            columns=["kl_recovered_pct"],
            ylabel="KL recovered (%)",
            title=f"{run.name}: KL recovered %",
            boundaries=ends,
        ),
        f"{key}_kl_recovered",
        "KL recovered % per task (metric kl only; the prior work's KL faithfulness percentage "
        "100 (1 - |B - C| / B), B = KL(P_corrupted || P_model), C = KL(P_corrupted || P_circuit)).",
    )
    page.figure(
        out,
        plots.metric_over_steps(
            table,
            columns=["edge_change_prev", "node_change_prev"],
            ylabel="change vs previous analysis",
            title=f"{run.name}: circuit change",
            boundaries=ends,
            labels=["edge change", "node change"],
        ),
        f"{key}_change",
        f"Change against the task's previous analysis: edge ({page.top} sets, solid) and node (dashed); "
        f"0 = same circuit; {chance_text(table, 'edge_change_prev')}; "
        f"{chance_text(table, 'node_change_prev')} (tables/circuits.csv: *_chance, *_corrected).",
    )
    page.figure(
        out,
        plots.change_bars(info["first_last"], title=f"{run.name}: first -> last"),
        f"{key}_change_first_last",
        "Edge and node change from each task's first fine-tuned analysis to its last (0 = the same set). "
        "Read each against its chance level (the change of random sets of the same sizes) in the table "
        "below: change / chance = 1 is as much change as random sets.",
    )
    page.parts.append(change_html(info["first_last"], page.top))
    for metric, label in (("model_accuracy", "model accuracy"), ("circuit_accuracy", "circuit accuracy")):
        (r, b), s = info["matrices"][metric], info["summaries"][metric]
        caption = (
            f"{label}: ACC {fmt(s['ACC'])}, BWT {fmt(s['BWT'])} (divisor T-1), FWT {fmt(s['FWT'])}, "
            f"forgetting {fmt(s['forgetting'])}"
        )
        fig = plots.accuracy_matrix_heatmap(r, baseline=b, caption=caption)
        fig.axes[0].set_title(f"{run.name}: {label} R[i][j]", fontsize=10)
        page.figure(
            out,
            fig,
            f"{key}_matrix_{metric}",
            f"Row i: after training through task i (untuned: step 0); column j: evaluated on task j. "
            f"{caption}.",
        )
    step, edge, node = info["overlap"]
    if len(edge) >= 2:
        ov = info.get("overlap_table")
        ec = chance_text(ov, "edge_jaccard")
        page.figure(
            out,
            plots.overlap_heatmap(edge, title=f"{run.name}: {page.top} edge Jaccard, step {step}"),
            f"{key}_overlap_edges",
            f"Edge Jaccard of the tasks' {page.top} edge sets at the final analysis (1 = the same edges); "
            f"{ec}. Chance levels and corrected values per pair in the table below.",
        )
        page.figure(
            out,
            plots.overlap_heatmap(node, title=f"{run.name}: circuit node IoU, step {step}"),
            f"{key}_overlap_nodes",
            f"Node IoU of the tasks' circuits at the final analysis; {chance_text(ov, 'node_iou')} "
            "(large circuits hold most nodes, so random node sets of their sizes already overlap much).",
        )
        if ov is not None:
            page.parts.append(overlap_html(ov, page.top))
    else:
        page.note(f"{run.name}: fewer than two tasks analysed at one step; no cross-task overlap.")
    if not run.size_curve.empty:
        last = run.size_curve[run.size_curve["step"] == run.size_curve["step"].max()]
        page.figure(
            out,
            plots.size_faithfulness_curve(last, title=f"{run.name}: size vs faithfulness"),
            f"{key}_size_curve",
            "Faithfulness against the share of edges kept (log axis); the "
            "area under each curve (normalised) in the legend: higher = smaller faithful circuits.",
        )
    else:
        page.note(f"{run.name}: no circuit-size curve recorded (figure 6 needs the callback's sizes option).")
    for task in run.tasks:
        steps = sorted(int(s) for s in run.records.loc[run.records["task"] == task, "step"])
        if not steps:
            continue
        tk = slug(task)
        g_last = run.graph(steps[-1], task)
        page.figure(
            out,
            plots.circuit_diagram(
                g_last, max_edges=max_edges, title=f"{run.name}: {task} at step {steps[-1]}"
            ),
            f"{key}_diagram_{tk}",
            f"{task}'s circuit at its last analysis: blue edges help (+), red hurt (-), width = |score|; "
            "q/k/v inputs solid/dashed/dotted.",
        )
        tuned = [s for s in steps if s > 0]
        if len(tuned) >= 2 or (steps[0] == 0 and len(steps) >= 2):
            first = tuned[0] if len(tuned) >= 2 else steps[0]
            page.figure(
                out,
                plots.circuit_diff_diagram(
                    run.graph(first, task),
                    g_last,
                    title=f"{run.name}: {task}",
                    labels=(f"step {first}", f"step {steps[-1]}"),
                    max_edges=max_edges,
                ),
                f"{key}_diff_{tk}",
                f"{task}'s circuit from step {first} to step {steps[-1]}: grey kept, "
                "green added, red removed edges.",
            )


def sweep_section(
    page: Page, out: Path, pairs: pd.DataFrame, fits: dict[str, Any] | None, models: list[str]
) -> None:
    """Figure 8: overlap vs forgetting (three variants) and forgetting bars, one panel set per model."""
    assert fits is not None
    page.heading("Sweep: overlap vs forgetting")
    by_model = fits.get("by_model") or {models[0] if models else "": fits}
    for model, model_fits in by_model.items():
        sub = pairs[pairs["model"] == model] if len(by_model) > 1 else pairs
        key = f"_{slug(model)}" if len(by_model) > 1 else ""
        label = f" ({model})" if len(by_model) > 1 else ""
        for name, caption in (
            (
                "headline",
                f"Each dot a pair A -> B: x = Jaccard of A's {page.top} edges at the end of A and B's at the "
                "end of B (post hoc), y = forgetting_abs, the absolute drop of A's model accuracy; grey "
                "crosses are left out.",
            ),
            (
                "prospective",
                "As the headline with the overlap measured before B is trained: A's and B's circuits both "
                "at the end of A.",
            ),
            ("model_rel", "As the headline, with forgetting_rel (the relative drop of A's model accuracy)."),
            ("circuit_rel", "As the headline, with the relative drop of A's circuit accuracy."),
            (
                "loss",
                "Loss variant: x = Jaccard of A's own circuit at the end of A and of B, y = relative "
                "change of A's validation loss.",
            ),
        ):
            f = model_fits[name]
            lin = {k: f[k] for k in ("n", "r", "r2", "slope", "intercept", "skipped") if k in f}
            fig = plots.overlap_forgetting_scatter(
                sub,
                {"linear": lin, "sigmoid": f["sigmoid"]},
                x=f["x"],
                y=f["y"],
                title=f"{SWEEP_TITLES.get(name, name)}{label}",
            )
            chance = sub[f"{f['x']}_chance"].dropna() if f"{f['x']}_chance" in sub else []
            level = f" Chance level of x: {fmt(float(chance.mean()))}." if len(chance) else ""
            page.figure(
                out,
                fig,
                f"sweep_{name}{key}",
                f"{caption}{level} r {fmt(f.get('r'), 2)} {interval(f.get('r_ci'))} (Fisher), "
                f"{interval(f.get('r_ci_cluster_first'))} (cluster bootstrap), n = {f['n']}. "
                f"{f.get('verdict') or ''}",
            )
        page.figure(
            out,
            plots.forgetting_bars(sub, column="forgetting_abs", title=f"forgetting_abs{label}"),
            f"sweep_forgetting_abs{key}",
            "Absolute drop of A's model accuracy per pair (the primary outcome; hatched: left out of the fits).",
        )
        page.figure(
            out,
            plots.forgetting_bars(sub, column="forgetting_rel", title=f"forgetting_rel{label}"),
            f"sweep_forgetting_model{key}",
            "Relative drop of A's model accuracy per pair (forgetting_rel; hatched: left out of the fits).",
        )
        page.figure(
            out,
            plots.forgetting_bars(sub, column="circuit_forgetting_rel", title=f"circuit accuracy{label}"),
            f"sweep_forgetting_circuit{key}",
            "Relative drop of A's circuit accuracy per pair (hatched: left out of the fits).",
        )
