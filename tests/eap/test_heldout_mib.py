"""Held-out scoring helpers and MIB's CPR/CMD against curves computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.evaluate import EvalResult
from circuitft.eap.heldout import disjoint_rows, heldout_scores, hold_out, split_halves
from circuitft.eap.mib import MIB_FRACTIONS, at_fractions, mib_areas


def _result(clean: list[float], corr: list[float], circ: list[float], metric: str = "kl") -> EvalResult:
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    n = len(clean)
    return EvalResult(
        metric, t(clean), t(corr), t(circ), torch.ones(n, dtype=torch.bool),
        torch.tensor([True] + [False] * (n - 1)), t([1.0] * n), t([0.5] * n), 7,
    )  # fmt: skip


def test_heldout_scores_names_and_values():
    s = heldout_scores(_result([0.0, 0.0], [2.0, 1.0], [0.5, 0.25]))
    assert s["faithfulness_heldout"] == pytest.approx((0.375 - 1.5) / (0 - 1.5))
    assert s["metric_gap_heldout"] == pytest.approx(1.5)
    assert s["kl_recovered_pct_heldout"] == pytest.approx(50.0)
    assert (s["model_accuracy_heldout"], s["circuit_accuracy_heldout"]) == (1.0, 0.5)
    assert s["n_examples_heldout"] == 2.0
    none = heldout_scores(None, "logit_diff")
    assert none["n_examples_heldout"] == 0 and math.isnan(none["faithfulness_heldout"])
    assert "kl_recovered_pct_heldout" not in none and "kl_recovered_pct_heldout" in heldout_scores(None)


def test_disjoint_rows_hold_out_and_halves(tiny):
    from circuitft.data.tasks import make_pairs

    pairs: PromptPairs = make_pairs("AddSub", tiny("tiny-gpt2").tokenizer, 9, 0, None, "val", lo=0, hi=29)
    dup = pairs.subset([0, 1, 2])
    kept, dropped = disjoint_rows(pairs.subset([3, 4, 5, 6, 7, 8]), dup)
    assert (len(kept), dropped) == (3, 0)
    kept, dropped = disjoint_rows(pairs, dup)
    assert (len(kept), dropped) == (0, 3)
    discovery, held = hold_out(pairs, 0.25)
    assert (len(discovery), len(held)) == (7, 2)
    assert [r.clean for r in held.rows] == [r.clean for r in pairs.rows[7:]]
    a, b = split_halves(pairs)
    assert len(a) + len(b) == 9 and not {r.clean for r in a.rows} & {r.clean for r in b.rows}
    with pytest.raises(ValueError):
        hold_out(pairs.subset([0]), 0.5)


def test_mib_areas_by_hand():
    flat = {x: 1.0 for x in MIB_FRACTIONS}
    assert mib_areas(flat) == pytest.approx({"cpr": 1.0 - 0.001, "cmd": 0.0})
    # faithfulness 0 up to 10%, then 0.5 at 20%, 0.9 at 50%, 1 at 100%
    ys = [0, 0, 0, 0, 0, 0, 0, 0.5, 0.9, 1.0]
    curve = dict(zip(MIB_FRACTIONS, ys, strict=True))
    cpr = 0.1 * 0.25 + 0.3 * 0.7 + 0.5 * 0.95
    cmd = (0.1 - 0.001) * 1.0 + 0.1 * 0.75 + 0.3 * 0.3 + 0.5 * 0.05
    assert mib_areas(curve) == pytest.approx({"cpr": cpr, "cmd": cmd})
    # a value above 1 counts in cmd by its distance from 1
    over = {**flat, 1.0: 1.2}
    assert mib_areas(over)["cmd"] == pytest.approx(0.5 * 0.2 / 2)
    missing = dict(curve)
    del missing[0.002]
    assert all(math.isnan(v) for v in mib_areas(missing).values())
    assert all(math.isnan(v) for v in mib_areas({**curve, 0.5: math.nan}).values())


def test_at_fractions_fills_fractions_of_the_same_size():
    # 110 edges: 0.1% ... 1% all mean one edge
    got = at_fractions({0.001: 0.2, 0.02: 0.3, 0.05: 0.4, 0.1: 0.5, 0.2: 0.6, 0.5: 0.7, 1.0: 1.0}, 110)
    assert got[0.002] == got[0.005] == got[0.01] == 0.2 and len(got) == 10


def test_faithfulness_standard_error_by_hand():
    from circuitft.eap.evaluate import faithfulness

    clean, corr, circ = [0.0, 0.0, 0.0], [2.0, 1.0, 3.0], [0.5, 0.5, 1.0]
    f = faithfulness(_result(clean, corr, circ))
    g = [a - b for a, b in zip(clean, corr, strict=True)]
    d = [a - b for a, b in zip(circ, corr, strict=True)]
    big_f = sum(d) / sum(g)
    resid = [x - big_f * y for x, y in zip(d, g, strict=True)]
    mean = sum(resid) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in resid) / 2)
    assert f["faithfulness"] == pytest.approx(big_f)
    assert f["faithfulness_se"] == pytest.approx(sd / (math.sqrt(3) * abs(sum(g) / 3)))
    assert math.isnan(faithfulness(_result([0.0], [1.0], [0.5]))["faithfulness_se"])
