"""The overlap measures of :mod:`circuitft.eap.overlap`, with each graph's top-k edge set computed once.

A report compares every circuit with several others (previous step, first step, other tasks, the pair's
other circuit); sorting 231k edge scores each time dominated a sweep's report. :func:`top_mask` keeps the
:func:`~circuitft.eap.overlap.top_k_edges` mask on the graph object, and the two measures below are those of
``eap.overlap`` (``edge_change`` and ``top_k_jaccard``) evaluated on the kept masks; the tests check that
they equal the originals.
"""

from __future__ import annotations

import torch

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.graph import Graph
from circuitft.eap.overlap import default_k, jaccard, top_k_edges
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
