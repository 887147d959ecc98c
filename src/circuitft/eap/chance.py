"""Chance levels of overlap measures: what two *random* sets of the same sizes would score.

Two sets of sizes ``a`` and ``b`` drawn uniformly at random (without replacement) from the same ``n`` items
share X items, X hypergeometric (population n, a marked, b drawn): E[X] = a b / n.

- :func:`expected_jaccard` is the **exact** expectation E[X / (a + b - X)], a sum over X's distribution
  (:data:`scipy.stats.hypergeom`), not the ratio-of-means approximation E[X] / (a + b - E[X]);
- :func:`expected_change` is the expected edge change ``1 - X / k`` (= ``1 - b / n`` for two k-sets) and
  :func:`expected_node_change` the expected ``|A Δ B| / |A|`` = ``(a + b - 2 E[X]) / a`` (both exact: they
  are linear in X);
- :func:`corrected` is the chance-corrected overlap ``(J - E[J]) / (1 - E[J])`` (as Cohen's kappa corrects
  agreement): 0 = what random sets of these sizes share, 1 = the same set, negative = less than chance;
- :func:`change_ratio` is a change against its chance level, ``c / E[c]``: 0 = the same set, 1 = as much
  change as two random sets (equal to ``1 - kappa`` of the matching agreement ``1 - c``).

A top-k edge set is close to a random k-set of all edges under the null; a pruned circuit's nodes are not
(pruning keeps connected nodes, and a large circuit holds most nodes), so node overlap is also compared at
matched density (:func:`circuitft.eap.overlap.matched_node_jaccard`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import hypergeom


def _check(a: int, b: int, n: int) -> None:
    if n < 0 or not (0 <= a <= n and 0 <= b <= n):
        raise ValueError(f"set sizes must lie in [0, n]: a={a}, b={b}, n={n}")


def expected_intersection(a: int, b: int, n: int) -> float:
    """E|A ∩ B| = a b / n for random sets of sizes a and b from n items (0 when n is 0)."""
    _check(a, b, n)
    return 0.0 if n == 0 else a * b / n


def expected_jaccard(a: int, b: int, n: int) -> float:
    """Exact E[|A ∩ B| / |A ∪ B|] for random sets of sizes ``a``, ``b`` from ``n`` items (1.0 if both empty)."""
    a, b, n = int(a), int(b), int(n)
    _check(a, b, n)
    if a == 0 and b == 0:
        return 1.0
    lo, hi = max(0, a + b - n), min(a, b)
    x = np.arange(lo, hi + 1)
    pmf = hypergeom.pmf(x, n, a, b)
    return float(np.sum(pmf * x / (a + b - x)))


def expected_change(k_prev: int, k_curr: int, n: int) -> float:
    """Expected edge change ``1 - |A ∩ B| / k_prev`` of random sets (= ``1 - k_curr / n``)."""
    if k_prev == 0:
        return math.nan
    return 1.0 - expected_intersection(k_prev, k_curr, n) / k_prev


def expected_node_change(a: int, b: int, n: int) -> float:
    """Expected ``|A Δ B| / |A|`` of random sets of sizes a (previous) and b (current) from n items."""
    if a == 0:
        return math.nan
    return (a + b - 2.0 * expected_intersection(a, b, n)) / a


def corrected(value: float, chance: float) -> float:
    """``(value - chance) / (1 - chance)``; NaN when either is undefined or chance is 1 (nothing to gain)."""
    if not (math.isfinite(value) and math.isfinite(chance)) or chance >= 1.0:
        return math.nan
    return (value - chance) / (1.0 - chance)


def change_ratio(change: float, chance: float) -> float:
    """``change / chance``: 0 = no change, 1 = as much change as random sets (NaN when chance is 0)."""
    if not (math.isfinite(change) and math.isfinite(chance)) or chance <= 0.0:
        return math.nan
    return change / chance
