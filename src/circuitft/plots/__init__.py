"""Figures of circuits and runs: plain data in (DataFrames, Graphs, numpy), a matplotlib ``Figure`` out.

Nothing here touches pyplot's global state: every figure is a ``matplotlib.figure.Figure`` with its own
Agg canvas, so these functions are safe inside training callbacks and threads, and nothing needs a display.

Public functions (all keyword arguments after ``*`` are optional unless noted)::

    circuit_diagram(graph, *, max_edges=None, title=None) -> Figure
        graph: circuitft.eap.Graph with scores and in_graph. Layers bottom (input) to top (logits), heads
        left to right in each layer, the MLP at the right end of its layer. An edge's colour is its score's
        sign (blue +, red -), its width |score|; q / k / v inputs of a head are solid / dashed / dotted and
        land at the left / middle / right of the head's marker. max_edges: draw only the largest |score|.
    circuit_diff_diagram(graph_a, graph_b, *, title=None, labels=("a", "b"), max_edges=None) -> Figure
        Edges in both circuits (kept, grey), only in b (added, green), only in a (removed, red); the legend
        counts all of them, max_edges draws only the largest |score|.
    overlap_heatmap(matrix, *, title, vmin=0.0, vmax=1.0) -> Figure
        matrix: square pandas.DataFrame task x task (e.g. edge Jaccard), values written in the cells.
    accuracy_matrix_heatmap(matrix, *, baseline=None, caption=None) -> Figure
        matrix: DataFrame R[i][j], rows "after training task i", columns "evaluated on task j";
        baseline: Series b_j of the untuned model (drawn as a first row); caption: text under the plot.
    metric_over_steps(table, *, columns, styles=None, ylabel, title=None, boundaries=()) -> Figure
        table: DataFrame with ``step``, ``task`` and the columns; one colour per task, one line style per
        column; task boundaries (steps) as vertical lines.
    change_bars(table, *, title=None) -> Figure
        table: DataFrame with ``task``, ``edge_change``, ``node_change`` (e.g. first -> last per task).
    size_faithfulness_curve(table, *, title=None) -> Figure
        table: DataFrame with ``fraction`` (0..1), ``faithfulness`` and optional ``task``; log x axis,
        the area under each curve (trapezoid over log10 fraction, normalised to [0, 1] width) in the legend.
    overlap_forgetting_scatter(pairs, fits, *, x="jaccard", y="forgetting_circuit", title=None) -> Figure
        pairs: DataFrame with A, B, x, y, ``included``; fits: {"linear": {...}, "sigmoid": {...}} as
        :func:`circuitft.analysis.fits.fit_line` / ``fit_sigmoid`` return (line: r, R², n; sigmoid: R², n).
    forgetting_bars(pairs, *, column="forgetting_model", title=None) -> Figure
    forgetting_curves(curve, *, title=None) -> Figure
        curve: DataFrame with ``run``, ``A``, ``fraction_B`` and ``accuracy`` (the report's forgetting_curve.csv):
        A's accuracy while B is trained, one line per pair, coloured by A.
    figure_to_png(fig, dpi=100) -> bytes
    save_figure(fig, path_without_ext, dpi=100) -> list[Path]
        writes ``<path>.png`` and ``<path>.svg``, each atomically (temp file + rename).
"""

from __future__ import annotations

from circuitft.plots.base import figure_to_png, new_figure, save_figure
from circuitft.plots.curves import change_bars, metric_over_steps, size_faithfulness_curve
from circuitft.plots.diagram import circuit_diagram, circuit_diff_diagram
from circuitft.plots.forgetting import forgetting_curves
from circuitft.plots.heatmaps import accuracy_matrix_heatmap, overlap_heatmap
from circuitft.plots.sweep import forgetting_bars, overlap_forgetting_scatter

__all__ = [
    "accuracy_matrix_heatmap",
    "change_bars",
    "circuit_diagram",
    "circuit_diff_diagram",
    "figure_to_png",
    "forgetting_bars",
    "forgetting_curves",
    "metric_over_steps",
    "new_figure",
    "overlap_forgetting_scatter",
    "overlap_heatmap",
    "save_figure",
    "size_faithfulness_curve",
]
