"""Circuit diagrams in pure matplotlib: layers bottom to top, heads left to right, MLPs at the right end.

Layout: ``input`` at the bottom, then per layer the heads ``a{l}.h{h}`` in a row (x = h) and the MLP
``m{l}`` at x = n_heads, half a row above the heads (level with them when attention and MLP are parallel),
``logits`` at the top. Each edge runs from its source node to its destination node; a head's q, k and v
inputs land left of, at and right of its marker, and are drawn solid, dashed and dotted.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.overlap import circuit_edges, circuit_nodes
from circuitft.eap.topk import top_k
from circuitft.errors import DataError
from circuitft.plots.base import new_figure, no_data

POSITIVE, NEGATIVE = "tab:blue", "tab:red"
KEPT, ADDED, REMOVED = "#8c8c8c", "tab:green", "tab:red"
KIND_STYLE = {"q": "solid", "k": "dashed", "v": "dotted", "mlp": "solid", "logits": "solid"}
KIND_OFFSET = {"q": -0.22, "k": 0.0, "v": 0.22, "mlp": 0.0, "logits": 0.0}
LABEL_LIMIT = 96  # label nodes only up to this many


def node_positions(cfg: GraphConfig) -> np.ndarray:
    """[n_forward + 1, 2] (x, y) of every node in :attr:`GraphConfig.node_names` order."""
    n_heads, n_layers = cfg.n_heads, cfg.n_layers
    pos = np.zeros((cfg.n_forward + 1, 2))
    centre = n_heads / 2
    pos[0] = (centre, 0.0)
    for layer in range(n_layers):
        y = 1.0 + 2.0 * layer
        for h in range(n_heads):
            pos[cfg.head_index(layer, h)] = (h, y)
        pos[cfg.mlp_index(layer)] = (n_heads, y if cfg.parallel_attn_mlp else y + 1.0)
    pos[-1] = (centre, 2.0 * n_layers + 1.0)
    return pos


def destination_kinds(cfg: GraphConfig) -> list[str]:
    """Kind of each destination: ``q``, ``k``, ``v``, ``mlp`` or ``logits``."""
    kinds = []
    for _layer in range(cfg.n_layers):
        kinds += ["q"] * cfg.n_heads + ["k"] * cfg.groups + ["v"] * cfg.groups + ["mlp"]
    return [*kinds, "logits"]


def _segments(cfg: GraphConfig, src: torch.Tensor, dst: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    pos = node_positions(cfg)
    kinds = destination_kinds(cfg)
    owner = cfg.destination_node
    segs = np.zeros((len(src), 2, 2))
    styles = []
    for i, (s, d) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
        kind = kinds[d]
        end = pos[int(owner[d])].copy()
        end[0] += KIND_OFFSET[kind]
        segs[i, 0], segs[i, 1] = pos[s], end
        styles.append(KIND_STYLE[kind])
    return segs, styles


def _size(cfg: GraphConfig) -> tuple[float, float]:
    width = min(20.0, max(6.0, 0.55 * (cfg.n_heads + 3)))
    height = min(20.0, max(4.5, 0.45 * (2 * cfg.n_layers + 3)))
    return width, height


def _draw_nodes(ax, cfg: GraphConfig, active: np.ndarray) -> None:  # noqa: ANN001
    pos = node_positions(cfg)
    names = cfg.node_names
    is_mlp = np.array([n.startswith("m") for n in names])
    for mask, marker in ((~is_mlp, "o"), (is_mlp, "s")):
        on, off = mask & active, mask & ~active
        ax.scatter(pos[off, 0], pos[off, 1], s=22, marker=marker, color="#dddddd", zorder=2, linewidths=0)
        ax.scatter(pos[on, 0], pos[on, 1], s=40, marker=marker, color="#333333", zorder=3, linewidths=0)
    labelled = range(len(names)) if len(names) <= LABEL_LIMIT else (0, len(names) - 1)  # else input, logits
    for i in labelled:
        ax.annotate(names[i], pos[i], xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7)
    ax.set_yticks([1.0 + 2.0 * layer for layer in range(cfg.n_layers)])
    ax.set_yticklabels([f"layer {layer}" for layer in range(cfg.n_layers)], fontsize=7)
    ax.set_xticks([])
    ax.set_xlim(-1.0, cfg.n_heads + 1.0)
    ax.set_ylim(-0.8, 2.0 * cfg.n_layers + 1.8)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)


def _style_legend() -> list[Line2D]:
    return [
        Line2D([], [], color="black", linestyle=KIND_STYLE[k], label=f"{k} input") for k in ("q", "k", "v")
    ]


def circuit_diagram(graph: Graph, *, max_edges: int | None = None, title: str | None = None) -> Figure:
    """Draw ``graph``'s circuit (its in_graph edges): colour = sign of the score, width = |score|."""
    cfg = graph.cfg
    fig = new_figure(*_size(cfg))
    mask = circuit_edges(graph)
    src, dst = mask.nonzero(as_tuple=True)
    if len(src) == 0:
        return no_data(fig, f"{title + ': ' if title else ''}the circuit has no edges")
    scores = graph.scores.detach().cpu().float()[src, dst].nan_to_num(0.0)
    if max_edges is not None and max_edges < len(src):
        if max_edges < 1:
            raise DataError(f"circuit_diagram: max_edges must be at least 1, got {max_edges}")
        keep = top_k(scores.abs(), max_edges)
        src, dst, scores = src[keep], dst[keep], scores[keep]
    segs, styles = _segments(cfg, src, dst)
    mag = scores.abs().numpy()
    widths = 0.4 + 3.6 * mag / mag.max() if mag.max() > 0 else np.full(len(mag), 1.0)
    colours = [POSITIVE if s >= 0 else NEGATIVE for s in scores.tolist()]
    ax = fig.add_subplot()
    order = np.argsort(mag)  # the strongest edges on top
    ax.add_collection(
        LineCollection(
            segs[order],
            colors=[colours[i] for i in order],
            linewidths=widths[order],
            linestyles=[styles[i] for i in order],
            alpha=0.75,
            zorder=1,
        )
    )
    _draw_nodes(ax, cfg, circuit_nodes(graph).numpy() | _logits_mask(cfg))
    handles = [
        Line2D([], [], color=POSITIVE, linewidth=2, label="score > 0"),
        Line2D([], [], color=NEGATIVE, linewidth=2, label="score < 0"),
        *_style_legend(),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.8)
    shown = f"{len(src)} of {graph.count_edges()} circuit edges" if max_edges else f"{len(src)} edges"
    ax.set_title(f"{title} ({shown})" if title else f"circuit ({shown})", fontsize=10)
    return fig


def circuit_diff_diagram(
    graph_a: Graph,
    graph_b: Graph,
    *,
    title: str | None = None,
    labels: tuple[str, str] = ("a", "b"),
    max_edges: int | None = None,
) -> Figure:
    """Edges kept (in both circuits), added (only in ``graph_b``) and removed (only in ``graph_a``).

    The legend counts every edge; ``max_edges`` draws only the edges with the largest |score| (the larger of
    the two graphs' scores), so that a diff of two large circuits stays readable and quick to save.
    """
    if not graph_a.cfg.same_edges(graph_b.cfg):
        raise DataError(
            f"cannot diff circuits of different models: {graph_a.cfg.describe()} vs {graph_b.cfg.describe()}"
        )
    cfg = graph_a.cfg
    fig = new_figure(*_size(cfg))
    a, b = circuit_edges(graph_a), circuit_edges(graph_b)
    groups = [("kept", a & b, KEPT, 0.8), ("removed", a & ~b, REMOVED, 1.4), ("added", b & ~a, ADDED, 1.4)]
    union = a | b
    if not bool(union.any()):
        return no_data(fig, f"{title + ': ' if title else ''}neither circuit has edges")
    drawn = union
    if max_edges is not None and int(union.sum()) > max_edges:
        if max_edges < 1:
            raise DataError(f"circuit_diff_diagram: max_edges must be at least 1, got {max_edges}")
        mag = torch.maximum(graph_a.scores.detach().cpu().abs(), graph_b.scores.detach().cpu().abs())
        mag = mag.nan_to_num(0.0).masked_fill(~union, -1.0).flatten()
        keep = top_k(mag, max_edges)
        drawn = torch.zeros_like(mag, dtype=torch.bool)
        drawn[keep] = True
        drawn = drawn.view_as(union)
    ax = fig.add_subplot()
    handles = []
    for name, mask, colour, width in groups:
        n = int(mask.sum())
        src, dst = (mask & drawn).nonzero(as_tuple=True)
        handles.append(Line2D([], [], color=colour, linewidth=2, label=f"{name} ({n})"))
        if len(src) == 0:
            continue
        segs, styles = _segments(cfg, src, dst)
        ax.add_collection(
            LineCollection(segs, colors=colour, linewidths=width, linestyles=styles, alpha=0.7, zorder=1)
        )
    nodes = circuit_nodes(graph_a).numpy() | circuit_nodes(graph_b).numpy() | _logits_mask(cfg)
    _draw_nodes(ax, cfg, nodes)
    ax.legend(handles=handles + _style_legend(), loc="upper left", fontsize=7, framealpha=0.8)
    head = title or "circuit diff"
    shown = f" ({int(drawn.sum())} of {int(union.sum())} edges drawn)" if drawn is not union else ""
    ax.set_title(f"{head}: {labels[0]} -> {labels[1]}{shown}", fontsize=10)
    return fig


def _logits_mask(cfg: GraphConfig) -> np.ndarray:
    mask = np.zeros(cfg.n_forward + 1, dtype=bool)
    mask[-1] = True
    return mask
