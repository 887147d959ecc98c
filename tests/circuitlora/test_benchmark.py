"""The CircuitLoRA benchmark's scoring: test-split rows only, the same rows for every run, paired statistics."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from circuitft.analysis.paired import across_seeds, mcnemar
from circuitft.data.splits import split_of

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "circuitlora_vs_lora.py"
BASE = {
    "model": {"model": "tiny-gpt2"},
    "data": {"tasks": [
        {"task": "AddSub", "steps": 4, "n_train": 16, "params": {"lo": 0, "hi": 29}},
        {"task": "Add", "name": "Small", "steps": 4, "n_train": 16, "params": {"lo": 0, "hi": 29}},
    ]},
}  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("circuitlora_vs_lora", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_test_split_rows_only_the_same_for_every_run(bench, tiny):
    loaded = tiny("tiny-gpt2")
    tests = bench.held_out(BASE, 12, 7, loaded.tokenizer)
    again = bench.held_out(BASE, 12, 7, loaded.tokenizer)
    assert list(tests) == ["AddSub", "Small"]
    for name, pairs in tests.items():
        assert len(pairs) == 12 and all(split_of(r.clean) == "test" for r in pairs.rows)
        assert [r.clean for r in pairs.rows] == [r.clean for r in again[name].rows]
    got = bench.score_model(loaded.model, tests)
    from circuitft.eap.answers import exact_match

    for name, pairs in tests.items():
        b = pairs.batch(slice(0, len(pairs)))
        with torch.no_grad():
            want = exact_match(loaded.model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits, b)
        assert got[name] == [bool(x) for x in want.tolist()]


def test_mcnemar_against_scipy_and_by_hand():
    a = [True] * 30 + [False] * 10 + [True] * 6 + [False] * 54
    b = [True] * 30 + [False] * 10 + [False] * 6 + [True] * 2 + [False] * 52
    m = mcnemar(a, b, ("c", "u"))
    assert (m["n"], m["only_c"], m["only_u"]) == (100, 6, 2)
    assert m["gain"] == pytest.approx(0.04) and m["acc_c"] == pytest.approx(0.36)
    assert m["p_value"] == pytest.approx(stats.binomtest(6, 8, 0.5).pvalue)
    half = 1.959964 * math.sqrt(8 - 16 / 100) / 100
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((0.04 - half, 0.04 + half), abs=1e-6)
    assert m["detectable_gain"] == pytest.approx((1.959964 + 0.841621) * math.sqrt(0.08 / 100), abs=1e-5)
    assert m["verdict"].startswith("inconclusive")
    strong = mcnemar([True] * 60 + [False] * 40, [False] * 60 + [False] * 40, ("c", "u"))
    assert strong["verdict"] == "c better" and strong["p_value"] < 1e-10
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_across_seeds_t_interval():
    gains = [0.02, -0.01, 0.05, 0.00, 0.03]
    s = across_seeds(gains)
    ci = stats.ttest_1samp(gains, 0).confidence_interval(0.95)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert s["verdict"].startswith("inconclusive")
    assert math.isnan(across_seeds([0.1])["ci_low"])


def test_paired_lines_say_inconclusive(bench):
    def row(seed: int, method: str, outcomes: list[bool]) -> dict:
        return {"seed": seed, "method": method, "outcomes": {"A": outcomes}}

    rows = [row(0, "circuit", [True, False, True, True]), row(0, "uniform", [True, True, False, True]),
            row(1, "circuit", [True, False, False, True]), row(1, "uniform", [True, False, True, True])]  # fmt: skip
    lines = bench.paired_lines(rows, "circuit", "uniform", "CircuitLoRA", "LoRA r4")
    assert lines[0].startswith(
        "paired on the same 4 test rows x 2 seed(s): gain of CircuitLoRA over LoRA r4 -12.5 points"
    )
    assert "smallest gain detectable at 80% power" in lines[0] and lines[-1].startswith(
        "verdict: inconclusive"
    )
