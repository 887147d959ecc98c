"""How much two circuits share: pure functions on graphs and edge/node sets (no model, no I/O).

An edge set is a bool mask [n_forward, n_backward] (as ``graph.in_graph``), a node set a bool mask
[n_forward + 1] (as ``graph.nodes_in_graph``); a Python ``set`` of names works wherever two sets are
compared. Node sets leave ``logits`` out (it is in every circuit, so it would only inflate agreement).
Graphs compared with each other must have the same edges (same model shape); circuits of different tasks
on one model compare directly.

Measures (as the prior work defined them; see the README, "Which numbers compare with the prior work"):

- Jaccard ``|A ∩ B| / |A ∪ B|`` (1.0 for two empty sets), of circuit edges, circuit nodes or top-k sets;
- edge change (mech-interp-ft): ``1 - |T_prev ∩ T_curr| / k``, T the top-k edges by ``|score|``,
  k = ``int(DEFAULT_TOP_FRAC * n_edges)`` (5%) by default;
- node change (mech-interp-ft): ``|N_prev Δ N_curr| / |N_prev|`` over circuit nodes (NaN if N_prev is empty);
- matched-density node Jaccard: the top-m nodes by summed ``|score|`` of the edges touching them on each
  side, m the smaller circuit's node count (:func:`matched_node_jaccard`).

Chance levels (:mod:`circuitft.eap.chance`): :func:`overlap` gives beside each measure ``<measure>_chance``
(what random sets of the same sizes from the same graph score) and ``<measure>_corrected`` (Jaccards:
``(J - E[J]) / (1 - E[J])``, 0 = chance, 1 = same set; changes: ``change / E[change]``, 0 = same set,
1 = as much change as random sets).

A collapsed graph (:class:`~circuitft.eap.collapsed.CollapsedGraph`, FinetuneCircuits' files with one edge
per head instead of q/k/v) compares with a full one by collapsing the full one first (a head edge is in the
circuit if any of its q/k/v edges is): :func:`edge_jaccard`, :func:`node_jaccard`, :func:`node_change`,
:func:`edge_flips`, :func:`overlap` and :func:`pairwise` accept either kind. The top-k measures need every
edge's score, which a collapsed file does not keep, so :func:`overlap` leaves them out for collapsed graphs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.chance import (
    change_ratio,
    corrected,
    expected_change,
    expected_jaccard,
    expected_node_change,
)
from circuitft.eap.collapsed import CollapsedGraph, as_collapsed
from circuitft.eap.graph import Graph
from circuitft.eap.topk import top_k_mask
from circuitft.errors import ConfigError, DataError

Set = torch.Tensor | set | frozenset
AnyGraph = Graph | CollapsedGraph


def circuit_edges(graph: AnyGraph) -> torch.Tensor:
    """The circuit's (real) edges: [n_forward, n_backward] bool, or [n_forward, n_forward] when collapsed."""
    return graph.in_graph.cpu() & graph.real_edge_mask


def circuit_nodes(graph: AnyGraph) -> torch.Tensor:
    """[n_forward + 1] bool: the circuit's nodes, ``logits`` left out."""
    nodes = graph.nodes_in_graph.cpu().clone()
    nodes[-1] = False
    return nodes


def top_k_edges(
    graph: Graph, k: int | None = None, absolute: bool = True, frac: float = DEFAULT_TOP_FRAC
) -> torch.Tensor:
    """[n_forward, n_backward] bool: the ``k`` best real edges by ``|score|`` (default ``int(frac * n_edges)``).

    No pruning: this is the raw top-k set the prior work compares. Ties are broken by edge position, so
    equal inputs always give equal sets.
    """
    k = default_k(graph, k, frac)
    scores = graph.scores.detach().cpu()
    rank = scores.abs() if absolute else scores.clone()
    rank = rank.float().nan_to_num(nan=-math.inf).masked_fill(~graph.cfg.real_edge_mask, -math.inf)
    return top_k_mask(rank, k)


def default_k(graph: Graph, k: int | None = None, frac: float = DEFAULT_TOP_FRAC) -> int:
    """``k`` if given (checked), else ``int(frac * n_edges)``."""
    if k is None:
        k = int(frac * graph.n_edges)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= graph.n_edges:
        raise ConfigError(f"k must be an integer in [1, {graph.n_edges}], got {k!r}")
    return k


def jaccard(a: Set, b: Set) -> float:
    """``|a ∩ b| / |a ∪ b|`` of two masks or two Python sets (1.0 when both are empty)."""
    inter, union = _inter_union(a, b)
    return 1.0 if union == 0 else inter / union


def edge_jaccard(a: AnyGraph, b: AnyGraph) -> float:
    """Jaccard of the two circuits' edge sets (of collapsed edges when either graph is collapsed)."""
    _check_same(a, b)
    a, b = _same_kind(a, b)
    return jaccard(circuit_edges(a), circuit_edges(b))


def node_jaccard(a: AnyGraph, b: AnyGraph) -> float:
    """Jaccard of the two circuits' node sets (``logits`` left out)."""
    _check_same(a, b)
    return jaccard(circuit_nodes(a), circuit_nodes(b))


def top_k_jaccard(a: Graph, b: Graph, k: int | None = None, frac: float = DEFAULT_TOP_FRAC) -> float:
    """Jaccard of the top-k edge sets by ``|score|`` (the prior work's cross-task overlap)."""
    _check_same(a, b)
    k = default_k(a, k, frac)
    return jaccard(top_k_edges(a, k), top_k_edges(b, k))


def edge_change(prev: Graph, curr: Graph, k: int | None = None, frac: float = DEFAULT_TOP_FRAC) -> float:
    """``1 - |T_prev ∩ T_curr| / k`` with T the top-k edges by ``|score|`` (0 = same set, 1 = disjoint)."""
    _check_same(prev, curr)
    k = default_k(prev, k, frac)
    inter = int((top_k_edges(prev, k) & top_k_edges(curr, k)).sum())
    return 1.0 - inter / k


def node_change(prev: AnyGraph | Set, curr: AnyGraph | Set) -> float:
    """``|N_prev Δ N_curr| / |N_prev|`` over circuit nodes (NaN when ``N_prev`` is empty)."""
    graphs = (Graph, CollapsedGraph)
    if isinstance(prev, graphs) and isinstance(curr, graphs):
        _check_same(prev, curr)
    a = circuit_nodes(prev) if isinstance(prev, graphs) else prev
    b = circuit_nodes(curr) if isinstance(curr, graphs) else curr
    inter, union = _inter_union(a, b)
    size = _size(a)
    return math.nan if size == 0 else (union - inter) / size


def node_strength(graph: Graph) -> torch.Tensor:
    """[n_forward] float: each node's summed ``|score|`` over the real edges that leave or enter it."""
    cfg = graph.cfg
    scores = graph.scores.detach().cpu().float().abs().nan_to_num(nan=0.0) * cfg.real_edge_mask
    out = scores.sum(dim=1)  # edges leaving each forward node
    incoming = scores.sum(dim=0)  # per backward (destination) slot
    dest = cfg.destination_node
    keep = dest < cfg.n_forward  # logits left out
    out.index_add_(0, dest[keep], incoming[keep])
    return out


def matched_node_jaccard(a: Graph, b: Graph) -> dict[str, Any]:
    """Node Jaccard at matched density: the top-m nodes by :func:`node_strength` of each graph, m the smaller
    circuit's node count (logits left out); with its chance level and corrected value."""
    _check_same(a, b)
    n = a.cfg.n_forward
    m = min(int(circuit_nodes(a).sum()), int(circuit_nodes(b).sum()))
    if m == 0:
        j = e = math.nan
    else:
        j = jaccard(top_k_mask(node_strength(a), m), top_k_mask(node_strength(b), m))
        e = expected_jaccard(m, m, n)
    return {
        "node_jaccard_matched": j,
        "node_jaccard_matched_chance": e,
        "node_jaccard_matched_corrected": corrected(j, e),
        "nodes_matched": m,
    }


def with_chance(values: dict[str, Any], sizes: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """``values`` with ``<name>_chance`` and ``<name>_corrected`` beside each measure named in ``sizes``
    (measure -> (size of the first set, size of the second, items in the universe))."""
    out = dict(values)
    for name, (a, b, n) in sizes.items():
        if name not in values:
            continue
        if name.endswith("change"):
            chance = expected_node_change(a, b, n) if name.startswith("node") else expected_change(a, b, n)
            out[f"{name}_chance"], out[f"{name}_corrected"] = chance, change_ratio(values[name], chance)
        else:
            chance = expected_jaccard(a, b, n)
            out[f"{name}_chance"], out[f"{name}_corrected"] = chance, corrected(values[name], chance)
    return out


def edge_flips(prev: AnyGraph, curr: AnyGraph) -> dict[str, int]:
    """Circuit edges added and removed from ``prev`` to ``curr`` (FinetuneCircuits' count of changes)."""
    _check_same(prev, curr)
    prev, curr = _same_kind(prev, curr)
    a, b = circuit_edges(prev), circuit_edges(curr)
    return {"added": int((b & ~a).sum()), "removed": int((a & ~b).sum()), "kept": int((a & b).sum())}


def overlap(a: AnyGraph, b: AnyGraph, k: int | None = None, frac: float = DEFAULT_TOP_FRAC) -> dict[str, Any]:
    """All measures between two circuits (e.g. two checkpoints, or two tasks on one model), as a dict, each
    with its chance level and chance-corrected value (``*_chance``, ``*_corrected``).

    When either graph is collapsed, edges are compared collapsed and the top-k and matched-density
    measures are left out.
    """
    _check_same(a, b)
    collapsed = isinstance(a, CollapsedGraph) or isinstance(b, CollapsedGraph)
    a, b = _same_kind(a, b)
    ea, eb = circuit_edges(a), circuit_edges(b)
    na, nb = circuit_nodes(a), circuit_nodes(b)
    top: dict[str, Any] = {}
    if not collapsed:
        k = default_k(a, k, frac)
        top = {"top_k": k, "top_k_jaccard": top_k_jaccard(a, b, k), "edge_change": edge_change(a, b, k)}
    n_edges, n_nodes = int(a.real_edge_mask.sum()), int(na.numel()) - 1
    sa, sb, ma, mb = int(ea.sum()), int(eb.sum()), int(na.sum()), int(nb.sum())
    values = {
        "edge_jaccard": jaccard(ea, eb),
        "node_jaccard": jaccard(na, nb),
        **top,
        "node_change": node_change(na, nb),
    }
    sizes = {
        "edge_jaccard": (sa, sb, n_edges),
        "node_jaccard": (ma, mb, n_nodes),
        "node_change": (ma, mb, n_nodes),
    }
    if not collapsed:
        sizes.update(top_k_jaccard=(k, k, n_edges), edge_change=(k, k, n_edges))
    return {
        **with_chance(values, sizes),
        **(matched_node_jaccard(a, b) if not collapsed else {}),
        "edges_a": sa,
        "edges_b": sb,
        "edges_shared": int((ea & eb).sum()),
        "nodes_a": ma,
        "nodes_b": mb,
        "nodes_shared": int((na & nb).sum()),
        "n_edges_total": n_edges,
        "n_nodes_total": n_nodes,
        **({"collapsed": True} if collapsed else {}),
    }


def pairwise(
    graphs: Mapping[str, AnyGraph], measure: str = "edge_jaccard", **kwargs: Any
) -> dict[str, dict[str, float]]:
    """``{name_a: {name_b: value}}`` of one measure between every pair of circuits (e.g. across tasks).

    ``measure``: ``edge_jaccard``, ``node_jaccard``, ``top_k_jaccard``, ``edge_change`` or ``node_change``.
    """
    funcs = {
        "edge_jaccard": edge_jaccard,
        "node_jaccard": node_jaccard,
        "top_k_jaccard": top_k_jaccard,
        "edge_change": edge_change,
        "node_change": node_change,
    }
    if measure not in funcs:
        raise ConfigError(f"unknown overlap measure {measure!r}; valid: {', '.join(funcs)}")
    func = funcs[measure]
    return {a: {b: float(func(ga, gb, **kwargs)) for b, gb in graphs.items()} for a, ga in graphs.items()}


def _same_kind(a: AnyGraph, b: AnyGraph) -> tuple[AnyGraph, AnyGraph]:
    """Both graphs as they are when both are full, else both collapsed."""
    if isinstance(a, Graph) and isinstance(b, Graph):
        return a, b
    return as_collapsed(a), as_collapsed(b)


def _check_same(a: AnyGraph, b: AnyGraph) -> None:
    if not a.cfg.same_edges(b.cfg):
        raise DataError(
            f"cannot compare circuits of different models: {a.cfg.describe()} vs {b.cfg.describe()}"
        )


def _size(x: Set) -> int:
    return int(x.sum()) if isinstance(x, torch.Tensor) else len(x)


def _inter_union(a: Set, b: Set) -> tuple[int, int]:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            raise DataError(f"cannot compare sets of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
        a, b = a.bool(), b.bool()
        return int((a & b).sum()), int((a | b).sum())
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        raise TypeError("compare two masks or two Python sets, not one of each")
    return len(a & b), len(a | b)
