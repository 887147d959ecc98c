"""The overlap measures of :mod:`circuitft.eap.overlap`, with each graph's top-k edge set computed once.

A report compares every circuit with several others (previous step, first step, other tasks, the pair's
other circuit); sorting 231k edge scores each time dominated a sweep's report. :func:`top_mask` keeps the
:func:`~circuitft.eap.overlap.top_k_edges` mask on the graph object, and the two measures below are those of
``eap.overlap`` (``edge_change`` and ``top_k_jaccard``) evaluated on the kept masks; the tests check that
they equal the originals.

Chance levels (:mod:`circuitft.eap.chance`): :func:`top_jaccard_chance` is the exact expected Jaccard of two
random k-sets of all edges, :func:`edge_change_chance` the expected change ``1 - k / n_edges``, and
:func:`node_stats` gives the node Jaccard and change of two circuits with theirs (random node sets of the
circuits' sizes from all nodes but logits).
"""

from __future__ import annotations

import torch

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.chance import change_ratio, corrected, expected_jaccard, expected_node_change
from circuitft.eap.graph import Graph
from circuitft.eap.overlap import circuit_nodes, default_k, jaccard, node_change, top_k_edges
from circuitft.errors import DataError


def top_mask(graph: Graph, frac: float = DEFAULT_TOP_FRAC) -> torch.Tensor:
    """``top_k_edges(graph, int(frac * n_edges))``, computed once per graph and k."""
    k = default_k(graph, None, frac)
    cache = graph.__dict__.setdefault("_top_masks", {})
    if k not in cache:
        cache[k] = top_k_edges(graph, k)
    return cache[k]


def _check(a: Graph, b: Graph) -> None:
    if not a.cfg.same_edges(b.cfg):
        raise DataError(
            f"cannot compare circuits of different models: {a.cfg.describe()} vs {b.cfg.describe()}"
        )


def top_jaccard(a: Graph, b: Graph, frac: float = DEFAULT_TOP_FRAC) -> float:
    """:func:`circuitft.eap.overlap.top_k_jaccard` with k = ``int(frac * n_edges)``."""
    _check(a, b)
    return jaccard(top_mask(a, frac), top_mask(b, frac))


def edge_change(prev: Graph, curr: Graph, frac: float = DEFAULT_TOP_FRAC) -> float:
    """:func:`circuitft.eap.overlap.edge_change`: ``1 - |T_prev ∩ T_curr| / k``."""
    _check(prev, curr)
    k = default_k(prev, None, frac)
    return 1.0 - int((top_mask(prev, frac) & top_mask(curr, frac)).sum()) / k


def top_jaccard_chance(graph: Graph, frac: float = DEFAULT_TOP_FRAC) -> float:
    """Exact E[J] of two random sets of ``int(frac * n_edges)`` edges of this graph."""
    k = default_k(graph, None, frac)
    return expected_jaccard(k, k, graph.n_edges)


def edge_change_chance(graph: Graph, frac: float = DEFAULT_TOP_FRAC) -> float:
    """Expected edge change of two random top-k sets: ``1 - k / n_edges``."""
    return 1.0 - default_k(graph, None, frac) / graph.n_edges


def node_stats(a: Graph, b: Graph) -> dict[str, float]:
    """Node Jaccard and node change (``a`` earlier) with chance levels and corrected values."""
    _check(a, b)
    na, nb = circuit_nodes(a), circuit_nodes(b)
    sa, sb, n = int(na.sum()), int(nb.sum()), int(na.numel()) - 1
    j, e = jaccard(na, nb), expected_jaccard(sa, sb, n)
    c, ec = node_change(na, nb), expected_node_change(sa, sb, n)
    return {
        "node_jaccard": j,
        "node_jaccard_chance": e,
        "node_jaccard_corrected": corrected(j, e),
        "node_change": c,
        "node_change_chance": ec,
        "node_change_corrected": change_ratio(c, ec),
    }
