"""Random circuits of the same size and the size curve, against independent computations."""

from __future__ import annotations

import statistics

import pytest
import torch
from digits import digit_rows

from circuitft.data.pairs import tokenize_pairs
from circuitft.eap.attribute import attribute
from circuitft.eap.baseline import (
    DEFAULT_CURVE,
    evaluate_references,
    parse_size_curve,
    requested_edges,
    selection_size,
)
from circuitft.eap.evaluate import EvalResult, evaluate, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.select import prune, select
from circuitft.eap.summary import smallest_reaching
from circuitft.errors import ConfigError


@pytest.fixture(scope="module")
def setup():
    from circuitft.models import load_model

    loaded = load_model("tiny-gpt2", seed=0)
    pairs = tokenize_pairs(digit_rows(6), loaded.tokenizer, "add")
    return loaded.model, pairs


def test_random_baseline_equals_an_independent_computation(setup):
    model, pairs = setup
    graph = Graph.from_model(model)
    before = graph.in_graph.clone()
    baseline, curve = evaluate_references(
        model, graph, pairs, n_requested=50, n_random=3, seed=7, batch_size=4
    )
    assert curve is None and torch.equal(graph.in_graph, before)
    # by hand: one generator seeded 7, randperm over the real edges' flat positions, prune, evaluate alone
    gen = torch.Generator().manual_seed(7)
    real = graph.cfg.real_edge_mask
    where = real.flatten().nonzero().flatten()
    expected, sizes = [], []
    for _ in range(3):
        pick = where[torch.randperm(len(where), generator=gen)[:50]]
        other = Graph.from_model(model)
        flat = torch.zeros(real.numel(), dtype=torch.bool)
        flat[pick] = True
        other.in_graph = flat.view_as(real)
        prune(other)
        sizes.append(other.count_edges())
        expected.append(
            faithfulness(evaluate(model, other, pairs, batch_size=4, progress=False))["faithfulness"]
        )
    assert baseline["faithfulness"] == pytest.approx(expected, abs=1e-5)
    assert baseline["n_edges"] == sizes and baseline["n_edges_sampled"] == 50 and baseline["n_samples"] == 3
    assert baseline["faithfulness_mean"] == pytest.approx(statistics.mean(expected), abs=1e-5)
    assert baseline["faithfulness_std"] == pytest.approx(statistics.stdev(expected), abs=1e-5)
    assert (baseline["faithfulness_min"], baseline["faithfulness_max"]) == pytest.approx(
        (min(expected), max(expected)), abs=1e-5
    )
    assert len(set(baseline["faithfulness"])) == 3  # three different draws
    other_seed, _ = evaluate_references(model, graph, pairs, n_requested=50, n_random=3, seed=8, batch_size=4)
    assert other_seed["faithfulness"] != baseline["faithfulness"]


def test_a_full_size_random_circuit_is_the_model(setup):
    model, pairs = setup
    graph = Graph.from_model(model)
    baseline, _ = evaluate_references(
        model, graph, pairs, n_requested=graph.n_edges, n_random=2, batch_size=4
    )
    assert baseline["faithfulness_mean"] == pytest.approx(1.0, abs=1e-4)
    assert baseline["faithfulness_std"] == pytest.approx(0.0, abs=1e-4)
    assert baseline["n_edges"] == [graph.n_edges] * 2


def test_size_curve_points_equal_select_then_evaluate(setup):
    model, pairs = setup
    graph = attribute(model, Graph.from_model(model), pairs, ig_steps=2, batch_size=4, progress=False)
    fracs = (0.02, 0.1, 0.3, 0.6)
    baseline, curve = evaluate_references(
        model, graph, pairs, n_requested=10, n_random=0, sizes=fracs, batch_size=4
    )
    assert baseline is None and [p["frac"] for p in curve] == list(fracs)
    for point in curve:
        alone = select(graph.copy(), top_frac=point["frac"])
        res = evaluate(model, alone, pairs, batch_size=4, progress=False)
        assert point["n_edges"] == alone.count_edges()
        assert point["faithfulness"] == pytest.approx(faithfulness(res)["faithfulness"], abs=1e-5)
    best = smallest_reaching(curve, 0.8)
    reached = [p for p in curve if p["faithfulness"] >= 0.8]
    if reached:  # the first (smallest) point of the curve at or above 0.8, none smaller
        assert best["frac"] == reached[0]["frac"] and best["n_edges"] == reached[0]["n_edges"]
        assert all(p["faithfulness"] < 0.8 for p in curve if p["frac"] < best["frac"])
    else:
        assert best["n_edges"] is None and "reason" in best


def test_fractions_giving_the_same_edge_count_are_evaluated_once(setup):
    model, pairs = setup
    graph = attribute(model, Graph.from_model(model), pairs, method="EAP", batch_size=4, progress=False)
    _, curve = evaluate_references(
        model, graph, pairs, n_requested=5, n_random=0, sizes=(0.001, 0.002, 0.01, 0.1)
    )
    assert [p["frac"] for p in curve] == [0.001, 0.1]  # 0.1% ... 1% of 110 edges all ask for 1 edge


def test_the_main_circuits_evaluation_is_reused(setup):
    model, pairs = setup
    graph = attribute(model, Graph.from_model(model), pairs, method="EAP", batch_size=4, progress=False)
    select(graph, top_frac=0.2)
    real = evaluate(model, graph, pairs, batch_size=4, progress=False)
    marked = EvalResult(real.metric, real.clean, real.corrupted, real.clean * 0 + 123.0, real.model_correct,
                        real.circuit_correct, real.kl_corr_clean, real.kl_corr_circ, real.n_edges)  # fmt: skip
    _, curve = evaluate_references(
        model, graph, pairs, n_requested=22, n_random=0, sizes=(0.1, 0.2), main=marked
    )
    by_frac = {p["frac"]: p["faithfulness"] for p in curve}
    assert by_frac[0.2] == pytest.approx(faithfulness(marked)["faithfulness"])  # taken from ``main``
    assert by_frac[0.1] != pytest.approx(faithfulness(marked)["faithfulness"])  # evaluated


def test_parse_size_curve_and_requested_sizes(setup):
    model, _ = setup
    assert parse_size_curve("true") == DEFAULT_CURVE == (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    assert parse_size_curve("false") == () and parse_size_curve(False) == ()
    assert parse_size_curve("0.1, 0.05,0.1") == (0.05, 0.1)
    for bad in ("2", "abc", "0.1,x", ","):
        with pytest.raises(ConfigError, match="--size_curve"):
            parse_size_curve(bad)
    graph = Graph.from_model(model)
    graph.scores = torch.arange(graph.scores.numel(), dtype=torch.float32).view_as(graph.scores)
    assert requested_edges(graph, "top_frac", 0.1) == 11 and requested_edges(graph, "top_n", 7) == 7
    real_scores = graph.scores[graph.cfg.real_edge_mask]
    assert requested_edges(graph, "threshold", float(real_scores.sort().values[-4])) == 4
    assert selection_size(graph, {"top_n": None, "greedy_n": 9}) == 9
    select(graph, top_n=12)
    assert selection_size(graph, None) == 12  # from the graph's recorded selection
    graph.meta.pop("selection")
    assert selection_size(graph, None) == graph.count_edges()


@pytest.mark.parametrize(("reaches", "side"), [(True, "smaller"), (False, "larger")])
def test_one_sided_curve_keeps_the_side_that_decides_the_80_percent_point(setup, reaches, side):
    model, pairs = setup
    graph = attribute(model, Graph.from_model(model), pairs, method="EAP", batch_size=4, progress=False)
    select(graph, top_n=22)
    real = evaluate(model, graph, pairs, batch_size=4, progress=False)
    circuit = real.clean if reaches else real.corrupted  # faithfulness exactly 1 or 0
    main = EvalResult(real.metric, real.clean, real.corrupted, circuit, real.model_correct, real.circuit_correct,
                      real.kl_corr_clean, real.kl_corr_circ, real.n_edges)  # fmt: skip
    fracs = (0.05, 0.1, 0.5, 0.9)  # 5, 11, 55, 99 edges around the main circuit's 22
    _, curve = evaluate_references(model, graph, pairs, n_requested=22, n_random=0, sizes=fracs, main=main,
                                   one_side=True)  # fmt: skip
    mains = [p for p in curve if p.get("main")]
    assert len(mains) == 1 and mains[0]["frac"] == 22 / 110 and mains[0]["faithfulness"] == float(reaches)
    others = [p["frac"] for p in curve if not p.get("main")]
    assert others == ([0.05, 0.1] if side == "smaller" else [0.5, 0.9])
    best = smallest_reaching(curve)
    if reaches:  # the main circuit or a smaller one on the curve
        assert best["frac"] <= 22 / 110
