"""The ``k`` largest scores, ties broken by position: the one top-k of circuitft.

Circuit selection (:func:`~circuitft.eap.select.apply_topn`), the prior work's top-k sets
(:func:`~circuitft.eap.overlap.top_k_edges`), :meth:`~circuitft.eap.graph.Graph.top_edges`, the circuit
diagrams and the benchmark all rank through :func:`top_k`, so equal scores give the same edges wherever
they are ranked, and equal inputs always give equal sets (``torch.topk`` alone leaves the order of ties
unspecified).
"""

from __future__ import annotations

import math

import torch


def top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the ``k`` largest entries of ``values``, largest first; of equal values the earlier
    position comes first (as a stable descending sort would give). NaN counts as ``-inf``; ``k`` larger than
    ``values`` takes them all."""
    flat = values.flatten()
    if flat.is_floating_point():
        flat = flat.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    k = min(int(k), flat.numel())
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=flat.device)
    kth = torch.topk(flat, k, sorted=False).values.min()
    above = (flat > kth).nonzero().flatten()  # strictly better than the k-th best ...
    ties = (flat == kth).nonzero().flatten()[: k - len(above)]  # ... then the ties in position order
    chosen = torch.cat([above, ties]).sort().values
    return chosen[torch.sort(flat[chosen], descending=True, stable=True).indices]


def top_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask shaped like ``values``: its :func:`top_k` entries."""
    mask = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    mask[top_k(values, k)] = True
    return mask.view_as(values)
