"""Line and bar charts of per-(step, task) tables: metrics over steps, circuit change, size vs faithfulness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from circuitft.plots.base import new_figure, no_data

LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")


def task_colours(tasks: Sequence[str]) -> dict[str, tuple]:
    """One colour per task, in order (tab10, or tab20 beyond 10 tasks)."""
    cmap = colormaps["tab10" if len(tasks) <= 10 else "tab20"]
    return {t: cmap(i % cmap.N) for i, t in enumerate(tasks)}


def metric_over_steps(
    table: pd.DataFrame,
    *,
    columns: Sequence[str],
    styles: Sequence[str] | None = None,
    ylabel: str,
    title: str | None = None,
    boundaries: Sequence[int] = (),
    labels: Sequence[str] | None = None,
) -> Figure:
    """One line per (task, column): colour = task, line style = column; task boundaries as grey lines."""
    fig = new_figure(7.5, 4.5)
    present = [c for c in columns if c in table.columns and table[c].notna().any()]
    if table.empty or not present:
        return no_data(fig, f"{title or ylabel}: not recorded in this run")
    styles = list(styles or LINE_STYLES)
    names = dict(zip(columns, labels or columns, strict=False))
    ax = fig.add_subplot()
    tasks = list(dict.fromkeys(table["task"]))
    colours = task_colours(tasks)
    for task in tasks:
        rows = table[table["task"] == task].sort_values("step")
        for k, col in enumerate(columns):
            if col not in present:
                continue
            ok = rows[col].notna()
            ax.plot(
                rows["step"][ok],
                rows[col][ok],
                color=colours[task],
                linestyle=styles[k % len(styles)],
                marker="o",
                markersize=3,
                label=f"{task} {names[col]}",
            )
    for b in boundaries:
        ax.axvline(b, color="#999999", linewidth=0.8, linestyle="dashed")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=2 if len(tasks) * len(present) > 6 else 1)
    return fig


def change_bars(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Grouped bars per task: ``edge_change`` and ``node_change`` (0 = same circuit)."""
    fig = new_figure(max(5.0, 1.0 + 0.9 * len(table)), 4.0)
    if table.empty:
        return no_data(fig, f"{title or 'circuit change'}: fewer than two analyses of any task")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    for k, (col, colour) in enumerate((("edge_change", "tab:blue"), ("node_change", "tab:orange"))):
        ax.bar(
            x + (k - 0.5) * 0.38,
            table[col].to_numpy(dtype=float),
            width=0.38,
            color=colour,
            label=col.replace("_", " "),
        )
    ax.set_xticks(x, labels=[str(t) for t in table["task"]], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("change (0 = same, 1 = disjoint)")
    ax.set_ylim(
        0,
        max(1.0, float(np.nanmax(table[["edge_change", "node_change"]].to_numpy(dtype=float), initial=0.0))),
    )
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def area_under_curve(fraction: Sequence[float], faithfulness: Sequence[float]) -> float:
    """Trapezoid area under faithfulness over log10(fraction), divided by the log10 span (NaN if < 2 points)."""
    x = np.log10(np.asarray(fraction, dtype=float))
    y = np.asarray(faithfulness, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) < 2 or x[-1] == x[0]:
        return float("nan")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def size_faithfulness_curve(table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Faithfulness against the fraction of edges kept (log x); the normalised area in the legend."""
    fig = new_figure(6.5, 4.2)
    if table.empty:
        return no_data(fig, f"{title or 'circuit size vs faithfulness'}: no size sweep recorded")
    ax = fig.add_subplot()
    groups = table.groupby("task", sort=False) if "task" in table.columns else [("", table)]
    for task, rows in groups:
        rows = rows.sort_values("fraction")
        auc = area_under_curve(rows["fraction"], rows["faithfulness"])
        ax.plot(
            rows["fraction"] * 100,
            rows["faithfulness"],
            marker="o",
            markersize=3,
            label=f"{task} (area {auc:.3f})".strip(),
        )
    ax.set_xscale("log")
    ax.set_xlabel("edges kept (%)")
    ax.set_ylabel("faithfulness")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig
