"""Heatmaps of task x task tables: circuit overlap and the continual-learning accuracy matrix."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from circuitft.plots.base import new_figure, no_data

ANNOTATE_LIMIT = 16  # write values into the cells up to this many rows/columns


def _heatmap(
    fig: Figure,
    values: np.ndarray,
    rows: list[str],
    cols: list[str],
    vmin: float,
    vmax: float,
    cmap: str,
    colorbar_label: str,
):  # noqa: ANN202
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(values.astype(float))
    image = ax.imshow(masked, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=rows, fontsize=8)
    if max(len(rows), len(cols)) <= ANNOTATE_LIMIT:
        mid = (vmin + vmax) / 2
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = values[i, j]
                text = "n/a" if not math.isfinite(v) else f"{v:.2f}"
                colour = "black" if not math.isfinite(v) or v > mid else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.8)
    return ax


def overlap_heatmap(matrix: pd.DataFrame, *, title: str, vmin: float = 0.0, vmax: float = 1.0) -> Figure:
    """Square task x task overlap (e.g. edge Jaccard); NaN cells (a task without a circuit) stay blank."""
    n = max(len(matrix.index), 1)
    fig = new_figure(min(14.0, 2.5 + 0.7 * n), min(12.0, 2.0 + 0.6 * n))
    if matrix.empty:
        return no_data(fig, f"{title}: no circuits to compare")
    ax = _heatmap(
        fig,
        matrix.to_numpy(dtype=float),
        [str(i) for i in matrix.index],
        [str(c) for c in matrix.columns],
        vmin,
        vmax,
        "viridis",
        "overlap",
    )
    ax.set_title(title, fontsize=10)
    return fig


def accuracy_matrix_heatmap(
    matrix: pd.DataFrame, *, baseline: pd.Series | None = None, caption: str | None = None
) -> Figure:
    """R[i][j] (row: after training task i, column: evaluated on task j), the untuned baseline b_j on top."""
    rows = [f"after {i}" for i in matrix.index]
    values = matrix.to_numpy(dtype=float)
    if baseline is not None:
        b = baseline.reindex(matrix.columns).to_numpy(dtype=float)
        values = np.vstack([b[None, :], values]) if values.size else b[None, :]
        rows = ["untuned", *rows]
    n = max(len(rows), len(matrix.columns), 1)
    fig = new_figure(min(14.0, 3.0 + 0.8 * n), min(12.0, 2.5 + 0.6 * n + (0.5 if caption else 0.0)))
    if matrix.empty:
        return no_data(fig, "accuracy matrix: no task ends recorded")
    ax = _heatmap(fig, values, rows, [str(c) for c in matrix.columns], 0.0, 1.0, "magma", "accuracy")
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training through task i")
    ax.set_title("accuracy matrix R[i][j]", fontsize=10)
    if caption:
        fig.supxlabel(caption, fontsize=8)
    return fig
