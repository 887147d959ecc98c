"""Sweep figures: overlap against forgetting over pairs A -> B (with both fits), forgetting bars per pair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from circuitft.analysis.fits import sigmoid
from circuitft.plots.base import new_figure, no_data

AXIS_LABELS = {
    "jaccard": "overlap: Jaccard of A's and B's top circuit edges",
    "jaccard_prospective": "overlap before B: Jaccard of A's and B's top edges at the end of A",
    "forgetting_abs": "forgetting of A (absolute drop of its model accuracy)",
    "forgetting_rel": "forgetting of A (relative drop of its model accuracy)",
    "circuit_forgetting_rel": "forgetting of A (relative drop of its circuit accuracy)",
    "forgetting_circuit": "forgetting of A (relative drop of its circuit accuracy)",
    "forgetting_model": "forgetting of A (relative drop of its model accuracy)",
    "jaccard_self": "Jaccard of A's circuit at the end of A and at the end of B",
    "loss_change": "relative change of A's validation loss",
}


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2f}"


def overlap_forgetting_scatter(
    pairs: pd.DataFrame,
    fits: Mapping[str, Mapping[str, Any]],
    *,
    x: str = "jaccard",
    y: str = "forgetting_circuit",
    title: str | None = None,
) -> Figure:
    """Included pairs as dots (left-out ones as grey crosses); the line with r, R², n and the sigmoid with R²
    and n (a curve's r is no measure of association)."""
    fig = new_figure(6.8, 4.8)
    if pairs.empty:
        return no_data(fig, f"{title or 'overlap vs forgetting'}: no pairs")
    ax = fig.add_subplot()
    inc = pairs["included"].astype(bool) & pairs[x].notna() & pairs[y].notna()
    out = ~inc & pairs[x].notna() & pairs[y].notna()
    ax.scatter(
        pairs.loc[inc, x], pairs.loc[inc, y], color="tab:blue", zorder=3, label=f"pairs ({int(inc.sum())})"
    )
    if out.any():
        ax.scatter(
            pairs.loc[out, x],
            pairs.loc[out, y],
            color="#aaaaaa",
            marker="x",
            zorder=2,
            label=f"left out ({int(out.sum())})",
        )
    if len(pairs) <= 20:
        for _, row in pairs[inc | out].iterrows():
            ax.annotate(
                f"{row['A']}->{row['B']}",
                (row[x], row[y]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    xs = pairs.loc[inc, x].to_numpy(dtype=float)
    grid = np.linspace(xs.min(), xs.max(), 200) if len(xs) else np.array([])
    line, sig = fits.get("linear") or {}, fits.get("sigmoid") or {}
    if line.get("slope") is not None and len(grid):
        ax.plot(
            grid,
            line["slope"] * grid + line["intercept"],
            color="tab:orange",
            label=f"line: r={_fmt(line['r'])}, R²={_fmt(line['r2'])}, n={line['n']}",
        )
    if sig.get("a") is not None and len(grid):
        ax.plot(
            grid,
            sigmoid(grid, sig["a"], sig["k"], sig["x0"], sig["c"]),
            color="tab:green",
            label=f"sigmoid: R²={_fmt(sig['r2'])}, n={sig['n']}",
        )
    notes = [
        f"{name} fit skipped: {f['skipped']}"
        for name, f in (("line", line), ("sigmoid", sig))
        if f.get("skipped")
    ]
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="bottom")
    ax.set_xlabel(AXIS_LABELS.get(x, x.replace("_", " ")))
    ax.set_ylabel(AXIS_LABELS.get(y, y.replace("_", " ")))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig


def forgetting_bars(
    pairs: pd.DataFrame, *, column: str = "forgetting_model", title: str | None = None
) -> Figure:
    """One bar per pair A -> B: the relative drop of A's accuracy while B is trained (hatched: left out)."""
    fig = new_figure(max(6.0, 1.5 + 0.35 * len(pairs)), 4.2)
    if pairs.empty:
        return no_data(fig, f"{title or 'forgetting'}: no pairs")
    ax = fig.add_subplot()
    values = pairs[column].to_numpy(dtype=float)
    xs = np.arange(len(pairs))
    bars = ax.bar(xs, np.nan_to_num(values), color="tab:purple")
    for bar, inc in zip(bars, pairs["included"].astype(bool), strict=True):
        if not inc:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(
        xs,
        labels=[f"{a}->{b}" for a, b in zip(pairs["A"], pairs["B"], strict=True)],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel(column.replace("_", " "))
    if title:
        ax.set_title(title, fontsize=10)
    return fig
