"""The forgetting curves of a sweep: A's accuracy while B is trained, one line per pair A -> B."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from circuitft.plots.base import new_figure, no_data
from circuitft.plots.curves import task_colours


def forgetting_curves(curve: pd.DataFrame, *, title: str | None = None) -> Figure:
    """One line per run from ``curve`` (``run``, ``A``, ``fraction_B``, ``accuracy``, as
    :func:`circuitft.analysis.sweep.forgetting_curve_table` gives): x = fraction of B's stage trained,
    y = A's accuracy; the colour is A (pairs sharing a first task share it)."""
    fig = new_figure(6.0, 3.6)
    if curve.empty:
        return no_data(fig, f"{title or 'forgetting curves'}: no forgetting curves recorded")
    ax = fig.add_subplot()
    firsts = sorted(set(curve["A"]))
    colours = task_colours(firsts)
    labelled: set[str] = set()
    for _, rows in curve.sort_values(["A", "run"]).groupby("run", sort=False):
        rows = rows.sort_values("fraction_B")
        a = str(rows["A"].iloc[0])
        ax.plot(
            rows["fraction_B"],
            rows["accuracy"],
            color=colours[a],
            marker="o",
            markersize=3,
            linewidth=1,
            alpha=0.8,
            label=None if a in labelled else f"A = {a}",
        )
        labelled.add(a)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("fraction of B's stage trained (0: end of A, 1: end of B)")
    ax.set_ylabel("A's model accuracy (held-out rows)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig
