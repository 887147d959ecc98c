"""The sweep headline over synthetic pair runs: Jaccard, forgetting, the filter and the fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from circuitft.analysis.runs import read_run
from circuitft.analysis.sweep import fit_all, pairs_table

from .synth import top_names, write_run

# A's (model accuracy, circuit accuracy) at the end of A and at the end of B, per pair
PAIRS = {
    ("Abs", "Add"): ((0.95, 0.90), (0.60, 0.50)),
    ("Add", "Abs"): ((0.90, 0.85), (0.85, 0.80)),
    ("Abs", "Sub"): ((0.95, 0.90), (0.30, 0.20)),
    ("Sub", "Abs"): ((0.80, 0.70), (0.50, 0.40)),  # left out: circuit accuracy 0.70 < 0.8
    ("Add", "Sub"): ((0.90, 0.88), (0.88, 0.86)),
    ("Sub", "Add"): ((0.92, 0.82), (0.70, 0.41)),
}


def make_sweep(root, pairs=PAIRS, model="tiny-gpt2"):
    graphs = {}
    for n, ((a, b), (end_a, end_b)) in enumerate(pairs.items()):
        analyses = {0: {a: (0.1, 0.1)}, 10: {a: end_a}, 20: {a: end_b, b: (0.9, 0.9)}}
        val = {(10, a): 1.0 + n * 0.1, (20, a): 1.5 + n * 0.3}
        graphs[(a, b)] = write_run(
            root / f"{a}__{b}", [(a, 10), (b, 10)], analyses, seed=n, model=model, val_loss=val
        )
    return graphs


def expected(graphs):
    rows = []
    for n, ((a, b), ((ma, ca), (mb, cb))) in enumerate(PAIRS.items()):
        g = graphs[(a, b)]
        ta, tb, ta_late = top_names(g[(10, a)]), top_names(g[(20, b)]), top_names(g[(20, a)])
        la, lb = 1.0 + n * 0.1, 1.5 + n * 0.3
        rows.append(
            {
                "A": a,
                "B": b,
                "jaccard": len(ta & tb) / len(ta | tb),
                "fc": (ca - cb) / ca,
                "fm": (ma - mb) / ma,
                "included": ca >= 0.8,
                "self": len(ta & ta_late) / len(ta | ta_late),
                "loss": (lb - la) / la,
            }
        )
    return rows


def test_pairs_and_fits_match_an_independent_computation(tmp_path):
    graphs = make_sweep(tmp_path)
    runs = [read_run(p) for p in sorted(tmp_path.iterdir())]
    pairs = pairs_table(runs).set_index(["A", "B"])
    exp = expected(graphs)
    for e in exp:
        row = pairs.loc[(e["A"], e["B"])]
        assert row["jaccard"] == pytest.approx(e["jaccard"])
        assert row["circuit_forgetting_rel"] == pytest.approx(e["fc"])
        assert row["forgetting_rel"] == pytest.approx(e["fm"])
        assert row["jaccard_self"] == pytest.approx(e["self"])
        assert row["loss_change"] == pytest.approx(e["loss"])
        assert bool(row["included"]) == e["included"]
        assert row["end_A"] == 10 and row["end_B"] == 20
    fits = fit_all(pairs_table(runs))
    inc = [e for e in exp if e["included"]]
    x, y = np.array([e["jaccard"] for e in inc]), np.array([e["fc"] for e in inc])
    h = fits["circuit_rel"]
    assert h["n"] == 5 and h["left_out"] == 1
    assert h["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    slope, intercept = np.polyfit(x, y, 1)
    assert h["slope"] == pytest.approx(slope) and h["intercept"] == pytest.approx(intercept)
    ym = np.array([e["fm"] for e in inc])
    assert fits["model_rel"]["r"] == pytest.approx(np.corrcoef(x, ym)[0, 1])
    xs, ys = np.array([e["self"] for e in inc]), np.array([e["loss"] for e in inc])
    assert fits["loss"]["r"] == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert fits["headline"]["sigmoid"]["n"] == 5


def test_threshold_and_too_few_pairs(tmp_path):
    make_sweep(tmp_path)
    runs = [read_run(p) for p in sorted(tmp_path.iterdir())]
    fits = fit_all(pairs_table(runs, threshold=0.89), threshold=0.89)
    h = fits["headline"]
    assert h["n"] == 2 and h["left_out"] == 4 and h["r"] is None and "fit skipped" in h["note"]


def test_zero_accuracy_gives_undefined_forgetting(tmp_path):
    make_sweep(tmp_path, {("Add", "Sub"): ((0.0, 0.0), (0.0, 0.0))})
    pairs = pairs_table([read_run(tmp_path / "Add__Sub")], threshold=0.0)
    assert math.isnan(pairs["circuit_forgetting_rel"].iloc[0]) and bool(pairs["included"].iloc[0])


def test_models_are_fitted_separately(tmp_path):
    make_sweep(tmp_path / "a")
    make_sweep(tmp_path / "b", model="tiny-llama")
    runs = [read_run(p) for d in ("a", "b") for p in sorted((tmp_path / d).iterdir())]
    fits = fit_all(pairs_table(runs))
    assert set(fits["by_model"]) == {"tiny-gpt2", "tiny-llama"} and "warning" in fits
    assert fits["by_model"]["tiny-llama"]["headline"]["n"] == 5
