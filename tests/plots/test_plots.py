"""Figures from plain data: what is drawn matches the data, files are written whole, pyplot is untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from circuitft import plots
from circuitft.analysis.fits import fit_line, fit_sigmoid
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.overlap import top_k_edges


def scored_graph(seed: int, n_edges: int = 12) -> Graph:
    cfg = GraphConfig(n_layers=2, n_heads=3, d_model=8)
    g = Graph(cfg)
    gen = torch.Generator().manual_seed(seed)
    g.scores[cfg.real_edge_mask] = torch.randn(cfg.n_edges, generator=gen)
    g.in_graph = top_k_edges(g, n_edges)
    nodes = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
    src, dst = g.in_graph.nonzero(as_tuple=True)
    nodes[src] = True
    nodes[cfg.destination_node[dst]] = True
    nodes[-1] = True
    g.nodes_in_graph = nodes
    return g


def segments(fig: Figure) -> list[LineCollection]:
    return [c for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)]


def test_circuit_diagram_draws_each_edge_with_sign_colour_and_qkv_style():
    g = scored_graph(0)
    fig = plots.circuit_diagram(g, title="t")
    (coll,) = segments(fig)
    assert len(coll.get_segments()) == g.count_edges() == 12
    src, dst = g.in_graph.nonzero(as_tuple=True)
    scores = g.scores[src, dst]
    colours = [tuple(c) for c in coll.get_colors()]
    n_pos = sum(1 for c in colours if c[:3] == to_rgba("tab:blue")[:3])
    assert n_pos == int((scores >= 0).sum())
    widths = np.asarray(coll.get_linewidths())
    assert widths.max() == pytest.approx(4.0) and widths.min() >= 0.4
    # destinations of kind k / v are drawn dashed / dotted: count dashed segments independently
    kinds = []
    for _layer in range(2):
        kinds += ["q"] * 3 + ["k"] * 3 + ["v"] * 3 + ["mlp"]
    kinds.append("logits")
    n_dashed = sum(1 for d in dst.tolist() if kinds[d] in ("k", "v"))
    dashed = sum(1 for off, dashes in coll.get_linestyles() if dashes is not None)
    assert dashed == n_dashed


def test_circuit_diagram_max_edges_keeps_the_largest():
    g = scored_graph(1)
    fig = plots.circuit_diagram(g, max_edges=5)
    (coll,) = segments(fig)
    assert len(coll.get_segments()) == 5
    assert "5 of 12" in fig.axes[0].get_title()


def test_circuit_diagram_empty_circuit_is_a_note():
    g = Graph(GraphConfig(n_layers=1, n_heads=2))
    fig = plots.circuit_diagram(g, title="x")
    assert "no edges" in fig.axes[0].texts[0].get_text()


def test_diff_diagram_counts_kept_added_removed():
    a, b = scored_graph(2, 15), scored_graph(3, 15)
    ea, eb = a.in_graph, b.in_graph
    fig = plots.circuit_diff_diagram(a, b, labels=("s0", "s9"))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"kept ({int((ea & eb).sum())})" in labels
    assert f"added ({int((eb & ~ea).sum())})" in labels
    assert f"removed ({int((ea & ~eb).sum())})" in labels
    total = sum(len(c.get_segments()) for c in segments(fig))
    assert total == int((ea | eb).sum())


def test_diff_diagram_max_edges_draws_the_largest_but_counts_all():
    a, b = scored_graph(2, 15), scored_graph(3, 15)
    fig = plots.circuit_diff_diagram(a, b, max_edges=6)
    assert sum(len(c.get_segments()) for c in segments(fig)) == 6
    union = a.in_graph | b.in_graph
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"kept ({int((a.in_graph & b.in_graph).sum())})" in labels
    assert f"(6 of {int(union.sum())} edges drawn)" in fig.axes[0].get_title()


def test_heatmaps_write_values_and_baseline_row():
    m = pd.DataFrame([[1.0, 0.25], [0.25, 1.0]], index=["A", "B"], columns=["A", "B"])
    fig = plots.overlap_heatmap(m, title="edge Jaccard")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0.25", "0.25", "1.00", "1.00"]
    r = pd.DataFrame([[0.9, 0.1], [0.4, 0.8]], index=["A", "B"], columns=["A", "B"])
    fig = plots.accuracy_matrix_heatmap(r, baseline=pd.Series({"A": 0.05, "B": np.nan}), caption="ACC 0.60")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["untuned", "after A", "after B"]
    assert "n/a" in [t.get_text() for t in ax.texts] and "0.05" in [t.get_text() for t in ax.texts]
    assert fig.get_supxlabel() == "ACC 0.60"


def test_curves_and_bars():
    t = pd.DataFrame(
        {
            "step": [0, 3, 6] * 2,
            "task": ["A"] * 3 + ["B"] * 3,
            "model_accuracy": [0.1, 0.5, 0.9, 0.2, 0.3, 0.4],
            "circuit_accuracy": [np.nan] * 6,
        }
    )
    fig = plots.metric_over_steps(
        t, columns=["model_accuracy", "circuit_accuracy"], ylabel="acc", boundaries=[3]
    )
    lines = fig.axes[0].get_lines()
    data_lines = [ln for ln in lines if len(ln.get_xdata()) == 3]
    assert len(data_lines) == 2  # circuit accuracy is all NaN: not drawn
    assert list(data_lines[0].get_ydata()) == [0.1, 0.5, 0.9]
    bars = plots.change_bars(
        pd.DataFrame({"task": ["A", "B"], "edge_change": [0.3, 0.5], "node_change": [0.1, 0.2]})
    )
    heights = sorted(p.get_height() for p in bars.axes[0].patches)
    assert heights == [0.1, 0.2, 0.3, 0.5]


def test_size_curve_area_in_legend():
    frac = [0.001, 0.01, 0.1, 1.0]
    faith = [0.2, 0.4, 0.8, 1.0]
    fig = plots.size_faithfulness_curve(pd.DataFrame({"task": "A", "fraction": frac, "faithfulness": faith}))
    # independent trapezoid over log10 fraction (3 decades), divided by the span
    expected = ((0.2 + 0.4) / 2 + (0.4 + 0.8) / 2 + (0.8 + 1.0) / 2) / 3
    (label,) = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert label == f"A (area {expected:.3f})"
    assert fig.axes[0].get_xscale() == "log"


def test_scatter_legend_has_fit_numbers_and_skips():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.5, 8)
    y = 1 - 2 * x + rng.normal(0, 0.05, 8)
    pairs = pd.DataFrame(
        {
            "A": list("abcdefgh"),
            "B": list("bcdefgha"),
            "jaccard": x,
            "forgetting_circuit": y,
            "included": [True] * 6 + [False] * 2,
        }
    )
    fits = {"linear": fit_line(x[:6], y[:6]), "sigmoid": fit_sigmoid(x[:6], y[:6])}
    fig = plots.overlap_forgetting_scatter(pairs, fits)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    r = np.corrcoef(x[:6], y[:6])[0, 1]
    assert f"line: r={r:.2f}, R²={r * r:.2f}, n=6" in labels
    assert "left out (2)" in labels
    few = plots.overlap_forgetting_scatter(pairs.head(2), {"linear": fit_line(x[:2], y[:2])})
    assert any("fit skipped" in t.get_text() for t in few.axes[0].texts)
    bars = plots.forgetting_bars(pairs, column="forgetting_circuit")
    assert [p.get_height() for p in bars.axes[0].patches] == pytest.approx(list(y))


def test_png_bytes_and_atomic_files_and_no_pyplot_state(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = plots.circuit_diagram(scored_graph(4))
    png = plots.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    written = plots.save_figure(fig, tmp_path / "sub" / "diagram")
    assert [p.name for p in written] == ["diagram.png", "diagram.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["diagram.png", "diagram.svg"]  # no temp
    assert plt.get_fignums() == before
