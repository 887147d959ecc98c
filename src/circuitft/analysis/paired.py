"""Two methods scored on the same rows: McNemar's test, the interval of the gain and what the test can detect.

Used by ``benchmarks/circuitlora_vs_lora.py``. For per-row outcomes ``a`` and ``b`` (True = answered
correctly) on the same ``n`` rows, with ``n10`` the rows only ``a`` answers and ``n01`` those only ``b``:

- gain = acc(a) - acc(b) = (n10 - n01) / n, its 95% interval the Wald interval of a paired difference of
  proportions, ``gain ± 1.96 sqrt(n10 + n01 - (n10 - n01)^2 / n) / n``;
- McNemar's exact test: a two-sided binomial test of n10 successes in n10 + n01 trials at 1/2
  (``scipy.stats.binomtest``), the p-value of "the two methods answer the same rows equally often";
- the smallest gain detectable at 80% power (two-sided 5% test) at the observed discordance rate
  ``psi = (n10 + n01) / n``: ``(z_0.975 + z_0.8) sqrt(psi / n)`` (the normal approximation of the paired
  test's power for a gain small against psi).

:func:`across_seeds` does the same for the per-seed gains (a paired t interval over the seeds, which also
carries the training's seed-to-seed variation); the verdict reads "inconclusive" whenever an interval holds 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats

Z_975 = float(stats.norm.ppf(0.975))
Z_80 = float(stats.norm.ppf(0.80))


def verdict(low: float, high: float, a: str = "a", b: str = "b") -> str:
    """``inconclusive (the 95% interval holds 0)``, or which method is better when the interval excludes 0."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        return "inconclusive (the 95% interval holds 0)"
    return f"{a} better" if low > 0 else f"{b} better"


def mcnemar(a: Sequence[bool], b: Sequence[bool], names: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """Paired comparison of per-row outcomes ``a`` and ``b`` on the same rows (see the module docstring)."""
    if len(a) != len(b):
        raise ValueError(f"the outcomes must be paired: {len(a)} rows against {len(b)}")
    n = len(a)
    n10 = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    n01 = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    out: dict[str, Any] = {"n": n, "only_" + names[0]: n10, "only_" + names[1]: n01}
    if n == 0:
        return {**out, "gain": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
                "detectable_gain": math.nan, "verdict": verdict(math.nan, math.nan)}  # fmt: skip
    gain = (n10 - n01) / n
    half = Z_975 * math.sqrt(max(n10 + n01 - (n10 - n01) ** 2 / n, 0.0)) / n
    p = float(stats.binomtest(n10, n10 + n01, 0.5).pvalue) if n10 + n01 else 1.0
    psi = (n10 + n01) / n
    return {
        **out,
        "acc_" + names[0]: sum(map(bool, a)) / n,
        "acc_" + names[1]: sum(map(bool, b)) / n,
        "gain": gain,
        "ci_low": gain - half,
        "ci_high": gain + half,
        "p_value": p,
        "detectable_gain": (Z_975 + Z_80) * math.sqrt(psi / n) if psi else math.nan,
        "verdict": verdict(gain - half, gain + half, *names),
    }


def across_seeds(gains: Sequence[float], names: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """Mean per-seed gain with a paired t interval and the smallest gain detectable at 80% power over the
    seeds (``(t_0.975 + t_0.8) sd / sqrt(k)``, k seeds); NaN with fewer than 2 seeds."""
    k = len(gains)
    mean = sum(gains) / k if k else math.nan
    if k < 2:
        return {"seeds": k, "gain": mean, "ci_low": math.nan, "ci_high": math.nan,
                "detectable_gain": math.nan, "verdict": verdict(math.nan, math.nan)}  # fmt: skip
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (k - 1))
    t975, t80 = float(stats.t.ppf(0.975, k - 1)), float(stats.t.ppf(0.80, k - 1))
    half = t975 * sd / math.sqrt(k)
    return {
        "seeds": k,
        "gain": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "detectable_gain": (t975 + t80) * sd / math.sqrt(k),
        "verdict": verdict(mean - half, mean + half, *names),
    }
