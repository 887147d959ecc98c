"""Fit uncertainty: SciPy recomputations, an independent permutation p, the cluster bootstrap's weighted r,
the verdict, and the line-vs-sigmoid comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from circuitft.analysis.fits import compare_models, sigmoid
from circuitft.analysis.uncertainty import (
    cluster_bootstrap,
    correlation_uncertainty,
    detectable_r,
    resample_weights,
    stratified_permutation_p,
    verdict,
    weighted_r,
)

FIRST = list("AAABBBCCCDDD")
SECOND = list("BCDACDABDABC")


def data(seed: int = 0, slope: float = -1.0, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    return x, slope * x + rng.normal(0, 0.3, n)


def test_intervals_recomputed_with_scipy():
    x, y = data()
    u = correlation_uncertainty(x, y, FIRST, SECOND)
    res = pearsonr(x, y)
    ci = res.confidence_interval(0.95)
    assert u["r"] == pytest.approx(res.statistic)
    assert u["r_ci"] == pytest.approx([ci.low, ci.high])
    # Fisher by hand: tanh(atanh(r) +- 1.96 / sqrt(n - 3))
    z, se = math.atanh(res.statistic), 1 / math.sqrt(len(x) - 3)
    assert u["r_ci"] == pytest.approx([math.tanh(z - 1.959964 * se), math.tanh(z + 1.959964 * se)], abs=1e-6)
    rho = spearmanr(x, y).statistic
    se_rho = math.sqrt((1 + rho**2 / 2) / (len(x) - 3))
    assert u["rho"] == pytest.approx(rho)
    assert u["rho_ci"] == pytest.approx(
        [math.tanh(math.atanh(rho) - 1.959964 * se_rho), math.tanh(math.atanh(rho) + 1.959964 * se_rho)],
        abs=1e-6,
    )
    assert (u["n"], u["n_first_tasks"], u["n_second_tasks"]) == (12, 4, 4)
    assert "independent" in u["r_ci_method"]
    assert u["detectable_r"] == pytest.approx(math.tanh(2.8016 / 3), abs=1e-3)


def test_weighted_r_is_scipy_r_of_the_repeated_pairs():
    x, y = data(1)
    w = resample_weights(FIRST, SECOND, 50, seed=3)
    got = weighted_r(x, y, w)
    checked = 0
    for row, r in zip(w, got, strict=True):
        idx = np.repeat(np.arange(len(x)), row.astype(int))
        if len(idx) >= 3 and np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            assert r == pytest.approx(pearsonr(x[idx], y[idx]).statistic, abs=1e-9)
            checked += 1
        else:
            assert math.isnan(r)
    assert checked > 10
    # resampling first tasks keeps each task's pairs together: the counts are equal within a first task
    wa = resample_weights(FIRST, None, 20, seed=0)
    for t in set(FIRST):
        cols = [i for i, f in enumerate(FIRST) if f == t]
        assert (wa[:, cols] == wa[:, cols[:1]]).all()
    assert (wa.sum(axis=1) == len(FIRST)).all()  # 4 tasks of 3 pairs drawn 4 times


def test_cluster_bootstrap_is_seeded_and_brackets_r():
    x, y = data(2)
    a = cluster_bootstrap(x, y, FIRST, n_boot=500, seed=7)
    assert a == cluster_bootstrap(x, y, FIRST, n_boot=500, seed=7)
    r = pearsonr(x, y).statistic
    assert a[0][0] <= r <= a[0][1]


def independent_permutation_p(x, y, first, n=20000, seed=123):
    """A plain loop: shuffle y within each first task with random.shuffle, |r| by np.corrcoef."""
    import random

    rnd = random.Random(seed)
    obs = abs(np.corrcoef(x, y)[0, 1])
    groups = {}
    for i, f in enumerate(first):
        groups.setdefault(f, []).append(i)
    hits = 0
    for _ in range(n):
        yy = y.copy()
        for idx in groups.values():
            vals = [y[i] for i in idx]
            rnd.shuffle(vals)
            yy[idx] = vals
        hits += abs(np.corrcoef(x, yy)[0, 1]) >= obs - 1e-12
    return hits / n


@pytest.mark.parametrize("slope", [0.0, -0.6])
def test_permutation_p_agrees_with_an_independent_loop(slope):
    x, y = data(4, slope=slope)
    p, how = stratified_permutation_p(x, y, FIRST)  # 4 tasks of 3: 6^4 = 1296 arrangements, exact
    assert how.startswith("exact (1296")
    q = independent_permutation_p(x, y, FIRST)
    assert abs(p - q) < 4 * math.sqrt(max(p * (1 - p), 1e-4) / 20000) + 1e-3
    # Monte Carlo path when the exact count is over the limit
    p_mc, how_mc = stratified_permutation_p(x, y, FIRST, exact_limit=10, n_perm=4000, seed=1)
    assert (
        how_mc.startswith("Monte Carlo")
        and abs(p_mc - p) < 4 * math.sqrt(max(p * (1 - p), 1e-3) / 4000) + 2e-3
    )


def test_shuffling_within_first_tasks_ignores_between_task_spread():
    # y differs only between first tasks: within-task shuffles cannot change r, so p is 1
    x = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    y = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0])
    p, _ = stratified_permutation_p(x, y, list("AAABBBCCC"))
    assert p == 1.0


def test_verdicts():
    assert verdict(0.1, {"fisher": (-0.5, 0.6)}, 9, 3).startswith("Consistent with no relation")
    assert verdict(0.8, {"fisher": (0.4, 0.95), "first": (0.2, 0.9)}, 20, 5).startswith("Positive relation")
    assert verdict(-0.8, {"fisher": (-0.95, -0.4)}, 20, 5).startswith("Negative relation")
    # one interval holding 0 (the cluster bootstrap) is enough for no claim
    v = verdict(-0.8, {"fisher": (-0.95, -0.4), "first": (-0.99, 0.1)}, 20, 5)
    assert v.startswith("Consistent with no relation") and f"{detectable_r(20):.2f}" in v
    assert verdict(math.nan, {}, 2, 1).startswith("No interval")
    x, y = data(5, slope=-3.0, n=12)
    u = correlation_uncertainty(x, y, FIRST, SECOND)
    assert u["verdict"].startswith("Negative relation"), u["verdict"]
    assert u["r_ci_cluster_first"][1] < 0 and u["r_ci"][1] < 0


def test_model_comparison_prefers_the_true_model():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 30)
    line_y = 0.5 - 0.4 * x + rng.normal(0, 0.05, 30)
    c = compare_models(x, line_y)
    assert c["preferred_by_aic"] == "line" and c["loo_r2_line"] > 0.8
    sig_y = sigmoid(x, -0.8, 25.0, 0.5, 0.9) + rng.normal(0, 0.02, 30)
    c = compare_models(x, sig_y)
    assert c["preferred_by_aic"] == "sigmoid" and c["loo_r2_sigmoid"] > c["loo_r2_line"]
    # AIC by hand for the line
    slope, intercept = np.polyfit(x, sig_y, 1)
    sse = float(((slope * x + intercept - sig_y) ** 2).sum())
    assert c["aic_line"] == pytest.approx(30 * math.log(sse / 30) + 6)
    assert compare_models([0.1, 0.2, 0.3], [1, 2, 3])["skipped"]
