"""Line and sigmoid fits against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from circuitft.analysis.fits import fit_line, fit_sigmoid, sigmoid


def test_line_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 20)
    y = 0.3 - 0.7 * x + rng.normal(0, 0.1, 20)
    f = fit_line(np.append(x, np.nan), np.append(y, 1.0))  # a NaN point is dropped
    slope, intercept = np.polyfit(x, y, 1)
    r = np.corrcoef(x, y)[0, 1]
    assert f["n"] == 20
    assert f["slope"] == pytest.approx(slope) and f["intercept"] == pytest.approx(intercept)
    assert f["r"] == pytest.approx(r) and f["r2"] == pytest.approx(r * r)


def test_sigmoid_recovers_a_sigmoid():
    x = np.linspace(0, 1, 30)
    y = sigmoid(x, -0.8, 12.0, 0.4, 0.9)
    f = fit_sigmoid(x, y)
    assert f["r2"] == pytest.approx(1.0, abs=1e-3)
    assert f["r"] < -0.99  # falling curve
    fitted = sigmoid(x, f["a"], f["k"], f["x0"], f["c"])
    assert np.abs(fitted - y).max() < 0.02


def test_too_few_points_are_skipped():
    f = fit_line([0.1, 0.2], [1.0, 0.5])
    assert f["skipped"] and f["r"] is None and f["n"] == 2
    assert fit_line([0.2, 0.2, 0.2], [1, 2, 3])["skipped"] == "all x values are equal"
    assert fit_sigmoid([0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4])["skipped"]
