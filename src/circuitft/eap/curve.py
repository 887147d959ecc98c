"""The circuits of a size curve: :func:`size_masks` makes the top 0.1% ... 100% of edges by |score| from one
graph's scores (evaluated together with :func:`circuitft.eap.evaluate.evaluate_circuits`, which shares each
batch's clean and corrupted runs); :data:`SIZES` and :func:`check_sizes` are the fractions and their check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuitft.eap.graph import Graph
from circuitft.eap.select import apply_topn
from circuitft.eap.settings import SIZES as SIZES  # re-exported
from circuitft.eap.settings import check_sizes as check_sizes


def size_masks(graph: Graph, sizes: Sequence[float], prune: bool = True) -> list[torch.Tensor]:
    """For each fraction f of ``sizes``: the circuit of the ``max(1, int(f * n_edges))`` best edges by
    |score| (pruned like the main circuit), as an edge mask. ``graph`` is left as it was."""
    saved = graph.in_graph.clone(), graph.nodes_in_graph.clone()
    masks = []
    try:
        for f in sizes:
            apply_topn(graph, max(1, int(f * graph.n_edges)), prune=prune)
            masks.append(graph.in_graph.clone())
    finally:
        graph.in_graph, graph.nodes_in_graph = saved
    return masks
