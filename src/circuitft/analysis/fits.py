"""Least-squares fits of y against x: a line and a four-parameter sigmoid, compared by AIC and
leave-one-out R² (:func:`compare_models`).

Both return a plain dict (JSON-ready). With fewer than ``MIN_POINTS`` finite points, or no spread in x,
the fit is skipped: the dict holds ``n`` and ``skipped`` (the reason) and every number is None.

- line: ``y = slope * x + intercept``; ``r`` is Pearson's r of (x, y), ``r2 = 1 - SS_res / SS_tot``
  (equal to r² for a least-squares line).
- sigmoid: ``y = c + a / (1 + exp(-k (x - x0)))``, fitted by exact least squares in (a, c) for each (k, x0)
  on a grid refined three times around the best point, then polished by :func:`scipy.optimize.curve_fit`
  from there (kept only if it lowers the squared error; deterministic). ``r2`` as above; ``r`` (the Pearson
  r of the fitted values and y, signed by the curve's direction) is kept for the API but is not a measure of
  association: a four-parameter curve's r is inflated on few points, so reports compare the two models
  with :func:`compare_models` instead.
- :func:`compare_models`: AIC ``n ln(SSE / n) + 2 p`` (and AICc, ``+ 2 p (p + 1) / (n - p - 1)``) with p the
  parameters plus the noise variance (3 for the line, 5 for the sigmoid), and leave-one-out R²
  ``1 - sum (y_i - yhat_(-i))^2 / sum (y_i - mean y)^2`` (each point predicted by the model refitted
  without it; the sigmoid refit starts from the full fit). Lower AIC and higher LOO R² are better.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

MIN_POINTS = 3
SIGMOID_MIN_POINTS = 5  # four parameters: at least one point more


def _clean(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r (NaN when either side has no spread or fewer than 2 points)."""
    xa, ya = _clean(x, y)
    if len(xa) < 2:
        return math.nan
    dx, dy = xa - xa.mean(), ya - ya.mean()
    denom = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return math.nan if denom == 0 else float((dx * dy).sum()) / denom


def r_squared(y: np.ndarray, fitted: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` (NaN when y has no spread)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return math.nan if ss_tot == 0 else 1.0 - float(((y - fitted) ** 2).sum()) / ss_tot


def _skipped(n: int, reason: str, keys: Sequence[str]) -> dict[str, Any]:
    return {"n": n, "skipped": reason, **{k: None for k in keys}}


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def fit_line(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Least-squares line: ``{"n", "r", "r2", "slope", "intercept"}`` (or ``skipped``)."""
    xa, ya = _clean(x, y)
    keys = ("r", "r2", "slope", "intercept")
    n = len(xa)
    if n < MIN_POINTS:
        return _skipped(n, f"fewer than {MIN_POINTS} usable points", keys)
    if np.ptp(xa) == 0:
        return _skipped(n, "all x values are equal", keys)
    dx = xa - xa.mean()
    slope = float((dx * (ya - ya.mean())).sum() / (dx * dx).sum())
    intercept = float(ya.mean() - slope * xa.mean())
    fitted = slope * xa + intercept
    out = {"n": n, "r": pearson(xa, ya), "r2": r_squared(ya, fitted), "slope": slope, "intercept": intercept}
    return _nan_to_none(out)


def sigmoid(x: np.ndarray | float, a: float, k: float, x0: float, c: float) -> np.ndarray:
    """``c + a / (1 + exp(-k (x - x0)))``."""
    z = np.clip(-k * (np.asarray(x, dtype=float) - x0), -60.0, 60.0)
    return c + a / (1.0 + np.exp(z))


def _sigmoid_ls(xa: np.ndarray, ya: np.ndarray, k: float, x0: float) -> tuple[float, float, float]:
    """Best (a, c) for fixed (k, x0) and the residual sum of squares."""
    s = sigmoid(xa, 1.0, k, x0, 0.0)
    design = np.stack([s, np.ones_like(s)], axis=1)
    (a, c), *_ = np.linalg.lstsq(design, ya, rcond=None)
    sse = float(((design @ np.array([a, c]) - ya) ** 2).sum())
    return float(a), float(c), sse


def fit_sigmoid(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Least-squares sigmoid: ``{"n", "r", "r2", "a", "k", "x0", "c"}`` (or ``skipped``)."""
    xa, ya = _clean(x, y)
    keys = ("r", "r2", "a", "k", "x0", "c")
    n = len(xa)
    if n < SIGMOID_MIN_POINTS:
        return _skipped(n, f"fewer than {SIGMOID_MIN_POINTS} usable points", keys)
    span = float(np.ptp(xa))
    if span == 0:
        return _skipped(n, "all x values are equal", keys)
    log_k = np.linspace(math.log10(0.1 / span), math.log10(100.0 / span), 25)
    ks = np.concatenate([-(10.0**log_k), 10.0**log_k])
    x0s = np.linspace(xa.min() - span, xa.max() + span, 31)
    best = (math.inf, 0.0, 0.0)
    for _ in range(4):
        for k in ks:
            for x0 in x0s:
                sse = _sigmoid_ls(xa, ya, float(k), float(x0))[2]
                if sse < best[0] - 1e-15:
                    best = (sse, float(k), float(x0))
        _, k_best, x0_best = best
        # refine around the best point: k on a log scale, x0 linearly
        ks = k_best * 10.0 ** np.linspace(-0.3, 0.3, 13)
        step = float(x0s[1] - x0s[0]) if len(x0s) > 1 else span / 10
        x0s = np.linspace(x0_best - step, x0_best + step, 13)
    _, k, x0 = best
    a, c, sse = _sigmoid_ls(xa, ya, k, x0)
    a, k, x0, c = _polish(xa, ya, (a, k, x0, c), sse)
    fitted = sigmoid(xa, a, k, x0, c)
    direction = math.copysign(1.0, a * k)
    out = {
        "n": n,
        "r": direction * pearson(fitted, ya),
        "r2": r_squared(ya, fitted),
        "a": a,
        "k": k,
        "x0": x0,
        "c": c,
    }
    return _nan_to_none(out)


def _polish(
    xa: np.ndarray, ya: np.ndarray, p0: tuple[float, float, float, float], sse: float
) -> tuple[float, float, float, float]:
    """``curve_fit`` from ``p0``; p0 kept when the fit fails or does not lower the squared error."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # no covariance needed, only the parameters
            popt, _ = curve_fit(sigmoid, xa, ya, p0=p0, maxfev=2000)
    except (RuntimeError, ValueError, TypeError):
        return p0
    new = float(((sigmoid(xa, *popt) - ya) ** 2).sum())
    return tuple(float(v) for v in popt) if np.all(np.isfinite(popt)) and new < sse else p0  # type: ignore[return-value]


def _aic(sse: float, n: int, p: int) -> tuple[float, float]:
    """(AIC, AICc) of a least-squares fit with p parameters (noise variance included)."""
    if n <= 0 or sse <= 0:
        return math.nan, math.nan
    aic = n * math.log(sse / n) + 2 * p
    return aic, (aic + 2 * p * (p + 1) / (n - p - 1)) if n - p - 1 > 0 else math.nan


def _loo_line(xa: np.ndarray, ya: np.ndarray) -> np.ndarray:
    pred = np.full(len(xa), np.nan)
    for i in range(len(xa)):
        keep = np.arange(len(xa)) != i
        if np.ptp(xa[keep]) > 0:
            slope, intercept = np.polyfit(xa[keep], ya[keep], 1)
            pred[i] = slope * xa[i] + intercept
    return pred


def _loo_sigmoid(xa: np.ndarray, ya: np.ndarray, p0: tuple[float, float, float, float]) -> np.ndarray:
    pred = np.full(len(xa), np.nan)
    for i in range(len(xa)):
        keep = np.arange(len(xa)) != i
        sse = float(((sigmoid(xa[keep], *p0) - ya[keep]) ** 2).sum())
        params = _polish(xa[keep], ya[keep], p0, sse)
        pred[i] = float(sigmoid(xa[i], *params))
    return pred


def _loo_r2(ya: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    if ss_tot == 0 or not np.all(np.isfinite(pred)):
        return math.nan
    return 1.0 - float(((ya - pred) ** 2).sum()) / ss_tot


def compare_models(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Line against sigmoid: AIC, AICc, leave-one-out R² of each and the model AIC prefers."""
    xa, ya = _clean(x, y)
    n = len(xa)
    line, sig = fit_line(xa, ya), fit_sigmoid(xa, ya)
    out: dict[str, Any] = {"n": n, "params_line": 3, "params_sigmoid": 5}
    if line.get("skipped") or sig.get("skipped"):
        out["skipped"] = line.get("skipped") or sig.get("skipped")
        return out
    sse_line = float(((line["slope"] * xa + line["intercept"] - ya) ** 2).sum())
    p0 = (sig["a"], sig["k"], sig["x0"], sig["c"])
    sse_sig = float(((sigmoid(xa, *p0) - ya) ** 2).sum())
    out["aic_line"], out["aicc_line"] = _aic(sse_line, n, 3)
    out["aic_sigmoid"], out["aicc_sigmoid"] = _aic(sse_sig, n, 5)
    out["loo_r2_line"] = _loo_r2(ya, _loo_line(xa, ya))
    out["loo_r2_sigmoid"] = _loo_r2(ya, _loo_sigmoid(xa, ya, p0))
    a_line, a_sig = out["aic_line"], out["aic_sigmoid"]
    if math.isfinite(a_line) and math.isfinite(a_sig):
        out["preferred_by_aic"] = "line" if a_line <= a_sig else "sigmoid"
    return _nan_to_none(out)
