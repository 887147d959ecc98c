"""How sure a pair fit is: correlation intervals, cluster bootstrap, stratified permutation, power, verdict.

Pairs A -> B are not independent: every pair that starts with A shares A's circuit and A's accuracy at the
end of A. :func:`correlation_uncertainty` therefore reports, for x against y over the usable pairs:

- ``r`` (Pearson) with ``r_ci``: Fisher z interval from :func:`scipy.stats.pearsonr`
  (``confidence_interval``), which **assumes independent pairs**;
- ``rho`` (Spearman, :func:`scipy.stats.spearmanr`) with ``rho_ci``: Fisher z interval with the
  Bonett-Wright standard error ``sqrt((1 + rho^2 / 2) / (n - 3))``, also assuming independent pairs;
- ``r_ci_cluster_first``: percentile interval of Pearson r over a cluster bootstrap that resamples first
  tasks A with replacement, each with all its pairs; ``r_ci_cluster_both``: the same resampling first and
  second tasks independently (a pair is drawn as often as its A times its B). Each resample's r is
  computed from count-weighted moments (:func:`weighted_r`, equal to SciPy's ``pearsonr`` of the repeated
  pairs, tested). Resamples in which x or y has no spread have no r and are dropped
  (``bootstrap_dropped`` counts them);
- ``p_perm``: two-sided permutation p-value of r with y shuffled *within* each first task (exact over all
  within-task arrangements when there are at most ``exact_limit``, else ``n_perm`` seeded shuffles,
  p = (1 + count) / (1 + n_perm)); ``p_perm_method`` says which;
- ``n``, ``n_first_tasks``, ``n_second_tasks``; ``detectable_r``: the |r| a test of n independent pairs
  detects with 80% power at alpha 0.05 (Fisher z: ``tanh(2.80 / sqrt(n - 3))``);
- ``verdict``: one sentence. A relation is called only when every interval (Fisher and both bootstraps)
  excludes 0; otherwise the data are "consistent with no relation". With fewer than 10 first tasks it adds
  that the cluster bootstrap has only C(2k - 1, k) distinct resamples of k tasks (10 for 3), so its interval
  is rough.

Everything is seeded (``seed``): the same pairs give the same numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

Z95 = 1.959963984540054
Z80 = 0.8416212335729143
N_BOOT = 2000
N_PERM = 10000
EXACT_LIMIT = 50000


def fisher_interval(r: float, n: int, se: float | None = None) -> tuple[float, float]:
    """``tanh(atanh(r) ± 1.96 se)``, se = 1 / sqrt(n - 3) by default (NaN for n <= 3 or undefined r)."""
    if n <= 3 or not math.isfinite(r):
        return (math.nan, math.nan)
    if abs(r) >= 1.0:
        return (r, r)
    se = 1.0 / math.sqrt(n - 3) if se is None else se
    z = math.atanh(r)
    return (math.tanh(z - Z95 * se), math.tanh(z + Z95 * se))


def detectable_r(n: int) -> float:
    """|r| detected with 80% power at two-sided alpha 0.05 with n independent pairs (Fisher z)."""
    return math.tanh((Z95 + Z80) / math.sqrt(n - 3)) if n > 3 else math.nan


def _r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r by SciPy; NaN when either side has no spread."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(pearsonr(x, y).statistic)


def resample_weights(
    first: Sequence[str], second: Sequence[str] | None, n_boot: int, seed: int
) -> np.ndarray:
    """[n_boot, n] counts: how often each pair is drawn when first tasks (and second tasks) are resampled
    with replacement, each with all its pairs (a pair counts as often as its A times its B)."""
    rng = np.random.default_rng(seed)
    ua, ia = np.unique(np.asarray(first), return_inverse=True)
    weights = rng.multinomial(len(ua), np.full(len(ua), 1.0 / len(ua)), size=n_boot)[:, ia]
    if second is not None:
        ub, ib = np.unique(np.asarray(second), return_inverse=True)
        weights = weights * rng.multinomial(len(ub), np.full(len(ub), 1.0 / len(ub)), size=n_boot)[:, ib]
    return weights.astype(float)


def weighted_r(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson r of each resample given as counts (row of ``weights``): equal to :func:`scipy.stats.pearsonr`
    of x and y with each pair repeated as often as its count (NaN where x or y has no spread)."""
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (weights * x).sum(axis=1, keepdims=True) / total
        my = (weights * y).sum(axis=1, keepdims=True) / total
        dx, dy = x - mx, y - my
        sxy = (weights * dx * dy).sum(axis=1)
        sxx = (weights * dx * dx).sum(axis=1)
        syy = (weights * dy * dy).sum(axis=1)
        r = sxy / np.sqrt(sxx * syy)
    spread = (sxx > 1e-12 * max(1.0, float(np.sum(x * x)))) & (syy > 1e-12 * max(1.0, float(np.sum(y * y))))
    return np.where(spread & (total[:, 0] >= 3), np.clip(r, -1.0, 1.0), np.nan)


def cluster_bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    first: Sequence[str],
    second: Sequence[str] | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[tuple[float, float], int]:
    """95% percentile interval of Pearson r resampling first tasks (and second tasks, when given), and the
    number of resamples dropped because r was undefined there."""
    rs = weighted_r(x, y, resample_weights(first, second, n_boot, seed))
    ok = rs[np.isfinite(rs)]
    dropped = int(n_boot - len(ok))
    if len(ok) < max(10, n_boot // 10):
        return (math.nan, math.nan), dropped
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return (float(lo), float(hi)), dropped


def _within_arrangements(groups: list[np.ndarray]) -> int:
    return math.prod(math.factorial(len(g)) for g in groups)


def stratified_permutation_p(
    x: np.ndarray,
    y: np.ndarray,
    first: Sequence[str],
    *,
    n_perm: int = N_PERM,
    exact_limit: int = EXACT_LIMIT,
    seed: int = 0,
) -> tuple[float, str]:
    """Two-sided p of |r| with y permuted within each first task, and how it was computed."""
    fa = np.asarray(first)
    groups = [np.flatnonzero(fa == u) for u in np.unique(fa)]
    observed = _r(x, y)
    if not math.isfinite(observed):
        return math.nan, "undefined (no spread)"
    total = _within_arrangements(groups)
    if total <= exact_limit:
        per_group = [list(itertools.permutations(g)) for g in groups]
        ys = []
        for combo in itertools.product(*per_group):
            perm = np.empty(len(y), dtype=int)
            for g, order in zip(groups, combo, strict=True):
                perm[g] = order
            ys.append(y[perm])
        rs = _rows_r(x, np.asarray(ys))
        p = float(np.mean(np.abs(rs) >= abs(observed) - 1e-12))
        return p, f"exact ({total} within-task arrangements)"
    rng = np.random.default_rng(seed)
    ys = np.empty((n_perm, len(y)))
    for i in range(n_perm):
        perm = np.arange(len(y))
        for g in groups:
            perm[g] = rng.permutation(g)
        ys[i] = y[perm]
    rs = _rows_r(x, ys)
    count = int(np.sum(np.abs(rs) >= abs(observed) - 1e-12))
    return (1 + count) / (1 + n_perm), f"Monte Carlo ({n_perm} within-task shuffles, seed {seed})"


def _rows_r(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson r of x with each row of ys (vectorised; the permutations keep y's mean and spread)."""
    dx = x - x.mean()
    dy = ys - ys.mean(axis=1, keepdims=True)
    denom = np.sqrt((dx * dx).sum()) * np.sqrt((dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dy @ dx) / denom


FEW_CLUSTERS = 10


def _few(n_first: int) -> str:
    """A caution when the cluster bootstrap has few first tasks to resample (empty otherwise)."""
    if n_first >= FEW_CLUSTERS or n_first < 1:
        return ""
    distinct = math.comb(2 * n_first - 1, n_first)
    return (
        f" With {n_first} first tasks the cluster bootstrap has only {distinct} distinct resamples, so its "
        "interval is rough."
    )


LABELS = {"fisher": "Fisher", "first": "cluster bootstrap over first tasks", "both": "over both tasks"}


def verdict(r: float, intervals: dict[str, tuple[float, float]], n: int, n_first: int) -> str:
    """One sentence from the intervals: a relation only when every defined interval excludes 0."""
    defined = {k: v for k, v in intervals.items() if all(math.isfinite(b) for b in v)}
    if not math.isfinite(r) or not defined:
        return f"No interval could be computed from n = {n} pairs; no conclusion."
    cis = "; ".join(f"{LABELS.get(k, k)} ({lo:+.2f}, {hi:+.2f})" for k, (lo, hi) in defined.items())
    span = f"r = {r:+.2f}, 95% intervals: {cis}; n = {n} pairs from {n_first} first tasks"
    if all(v[0] > 0 for v in defined.values()):
        return f"Positive relation: {span}; every interval excludes 0.{_few(n_first)}"
    if all(v[1] < 0 for v in defined.values()):
        return f"Negative relation: {span}; every interval excludes 0.{_few(n_first)}"
    power = detectable_r(n)
    tail = f"; only |r| >= {power:.2f} would be detected with 80% power" if math.isfinite(power) else ""
    return f"Consistent with no relation: {span}; at least one interval includes 0{tail}.{_few(n_first)}"


def correlation_uncertainty(
    x: Sequence[float],
    y: Sequence[float],
    first: Sequence[str],
    second: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    n_perm: int = N_PERM,
    seed: int = 0,
) -> dict[str, Any]:
    """Every uncertainty number of one pair fit (see the module docstring); finite x, y only."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    fa, fb = np.asarray(first)[ok], np.asarray(second)[ok]
    n = len(xa)
    out: dict[str, Any] = {
        "n": n,
        "n_first_tasks": len(set(fa.tolist())),
        "n_second_tasks": len(set(fb.tolist())),
        "r_ci_method": "Fisher z (scipy pearsonr), assumes independent pairs",
        "rho_ci_method": "Fisher z with the Bonett-Wright SE sqrt((1 + rho^2/2)/(n - 3)), assumes independent pairs",
        "bootstrap_method": f"percentile, {n_boot} cluster resamples (seed {seed})",
        "detectable_r": detectable_r(n),
    }
    r = _r(xa, ya)
    out["r"] = r
    if math.isfinite(r) and n > 3:
        ci = pearsonr(xa, ya).confidence_interval(0.95)
        out["r_ci"] = [float(ci.low), float(ci.high)]
    else:
        out["r_ci"] = [math.nan, math.nan]
    rho = float(spearmanr(xa, ya).statistic) if math.isfinite(r) else math.nan
    out["rho"] = rho
    se = math.sqrt((1 + rho * rho / 2) / (n - 3)) if n > 3 and math.isfinite(rho) else None
    out["rho_ci"] = list(fisher_interval(rho, n, se))
    if math.isfinite(r):
        ci_a, drop_a = cluster_bootstrap(xa, ya, fa, n_boot=n_boot, seed=seed)
        ci_ab, drop_ab = cluster_bootstrap(xa, ya, fa, fb, n_boot=n_boot, seed=seed + 1)
        p, how = stratified_permutation_p(xa, ya, fa, n_perm=n_perm, seed=seed)
    else:
        ci_a = ci_ab = (math.nan, math.nan)
        drop_a = drop_ab = 0
        p, how = math.nan, "undefined (no spread)"
    out["r_ci_cluster_first"], out["r_ci_cluster_both"] = list(ci_a), list(ci_ab)
    out["bootstrap_dropped"] = {"first": drop_a, "both": drop_ab}
    out["p_perm"], out["p_perm_method"] = p, how
    intervals = {"fisher": tuple(out["r_ci"]), "first": ci_a, "both": ci_ab}
    out["verdict"] = verdict(r, intervals, n, out["n_first_tasks"])
    return out
