"""Chance levels of overlaps: the exact expected Jaccard against hand cases and Monte Carlo, corrected values,
and overlap()'s chance keys and matched-density node Jaccard against independent computations."""

from __future__ import annotations

import math
from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch

from circuitft.eap.chance import (
    change_ratio,
    corrected,
    expected_change,
    expected_intersection,
    expected_jaccard,
    expected_node_change,
)
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.overlap import circuit_nodes, matched_node_jaccard, node_strength, overlap


def exact_by_enumeration(a: int, b: int, n: int) -> float:
    """E[J] summing over every intersection size with the hypergeometric counts (exact fractions)."""
    total = Fraction(0)
    for x in range(max(0, a + b - n), min(a, b) + 1):
        ways = Fraction(comb(a, x) * comb(n - a, b - x), comb(n, b))
        total += ways * Fraction(x, a + b - x)
    return float(total)


def test_hand_cases():
    assert expected_jaccard(1, 1, 2) == pytest.approx(0.5)  # share the one item half of the time
    assert expected_jaccard(5, 5, 5) == pytest.approx(1.0)  # both sets are everything
    assert expected_jaccard(0, 3, 10) == 0.0 and expected_jaccard(0, 0, 10) == 1.0
    assert expected_jaccard(2, 1, 3) == pytest.approx(2 / 3 * 1 / 2)  # J = 1/2 when the single item is in A
    assert expected_jaccard(6, 6, 8) == pytest.approx(exact_by_enumeration(6, 6, 8))
    assert expected_intersection(10, 20, 100) == pytest.approx(2.0)
    assert expected_change(10, 10, 100) == pytest.approx(0.9)
    assert expected_node_change(10, 20, 100) == pytest.approx((10 + 20 - 4) / 10)
    with pytest.raises(ValueError, match="set sizes"):
        expected_jaccard(5, 11, 10)


@pytest.mark.parametrize("a,b,n", [(5, 7, 20), (30, 30, 40), (3, 12, 15), (50, 80, 1000)])
def test_exact_expectation_matches_enumeration_and_monte_carlo(a, b, n):
    e = expected_jaccard(a, b, n)
    assert e == pytest.approx(exact_by_enumeration(a, b, n), rel=1e-9)
    rng = np.random.default_rng(0)
    trials = 20000
    ja = np.zeros((trials, n), dtype=bool)
    jb = np.zeros((trials, n), dtype=bool)
    np.put_along_axis(ja, rng.random((trials, n)).argsort(axis=1)[:, :a], True, axis=1)
    np.put_along_axis(jb, rng.random((trials, n)).argsort(axis=1)[:, :b], True, axis=1)
    inter, union = (ja & jb).sum(axis=1), (ja | jb).sum(axis=1)
    mc = inter / union
    assert abs(mc.mean() - e) < 5 * mc.std() / math.sqrt(trials) + 1e-9
    # the ratio-of-means approximation is close but not the same number
    approx = a * b / n / (a + b - a * b / n)
    assert approx == pytest.approx(e, abs=0.05)


def test_sizes_the_readme_states():
    # about 249 of 301 nodes: two random node sets of that size overlap about 0.71 by chance
    assert expected_jaccard(249, 249, 301) == pytest.approx(0.7055, abs=5e-4)
    # top-5% of a 230k-edge graph: k/(2N - k) ~ 0.026
    n = 230_000
    k = int(0.05 * n)
    assert expected_jaccard(k, k, n) == pytest.approx(k / (2 * n - k), rel=1e-3)


def test_corrected_and_ratio():
    assert corrected(0.71, 0.71) == 0.0 and corrected(1.0, 0.3) == 1.0
    assert corrected(0.5, 0.75) == pytest.approx(-1.0)
    assert math.isnan(corrected(0.5, 1.0)) and math.isnan(corrected(math.nan, 0.2))
    assert change_ratio(0.45, 0.9) == pytest.approx(0.5) and math.isnan(change_ratio(0.1, 0.0))


CFG = GraphConfig(n_layers=3, n_heads=4, d_model=8)


def random_graph(seed: int, frac: float = 0.1) -> Graph:
    g = Graph(CFG)
    rng = np.random.default_rng(seed)
    g.scores[CFG.real_edge_mask] = torch.tensor(rng.normal(size=CFG.n_edges), dtype=torch.float32)
    k = int(frac * CFG.n_edges)
    flat = torch.zeros(CFG.n_edges, dtype=torch.bool)
    flat[torch.as_tensor(np.argsort(-np.abs(g.scores[CFG.real_edge_mask].numpy()))[:k].copy())] = True
    g.in_graph[CFG.real_edge_mask] = flat
    src, dst = g.in_graph.nonzero(as_tuple=True)
    g.nodes_in_graph[src] = True
    g.nodes_in_graph[CFG.destination_node[dst]] = True
    g.nodes_in_graph[-1] = True
    return g


def test_overlap_has_chance_and_corrected_beside_each_measure():
    a, b = random_graph(1), random_graph(2, frac=0.2)
    o = overlap(a, b)
    n_nodes = CFG.n_forward
    ea, eb = o["edges_a"], o["edges_b"]
    assert o["edge_jaccard_chance"] == pytest.approx(expected_jaccard(ea, eb, CFG.n_edges))
    assert o["node_jaccard_chance"] == pytest.approx(expected_jaccard(o["nodes_a"], o["nodes_b"], n_nodes))
    k = o["top_k"]
    assert o["top_k_jaccard_chance"] == pytest.approx(expected_jaccard(k, k, CFG.n_edges))
    for m in ("edge_jaccard", "node_jaccard", "top_k_jaccard"):
        assert o[f"{m}_corrected"] == pytest.approx((o[m] - o[f"{m}_chance"]) / (1 - o[f"{m}_chance"]))
    assert o["edge_change_chance"] == pytest.approx(1 - k / CFG.n_edges)
    assert o["edge_change_corrected"] == pytest.approx(o["edge_change"] / o["edge_change_chance"])
    nc = (o["nodes_a"] + o["nodes_b"] - 2 * o["nodes_a"] * o["nodes_b"] / n_nodes) / o["nodes_a"]
    assert o["node_change_chance"] == pytest.approx(nc)
    same = overlap(a, a)
    assert same["top_k_jaccard_corrected"] == 1.0 and same["node_jaccard_corrected"] == 1.0


def test_matched_density_node_jaccard_by_hand():
    a, b = random_graph(3), random_graph(4, frac=0.3)
    # independent node strength: sum |score| of every real edge touching the node (as source or destination)
    scores = a.scores.abs() * CFG.real_edge_mask
    strength = np.zeros(CFG.n_forward)
    for u, v in zip(*np.nonzero(CFG.real_edge_mask.numpy()), strict=True):
        strength[u] += float(scores[u, v])
        d = int(CFG.destination_node[v])
        if d < CFG.n_forward:
            strength[d] += float(scores[u, v])
    assert node_strength(a).numpy() == pytest.approx(strength, rel=1e-5)
    m = min(int(circuit_nodes(a).sum()), int(circuit_nodes(b).sum()))
    top = lambda g: set(np.argsort(-node_strength(g).numpy(), kind="stable")[:m].tolist())  # noqa: E731
    ta, tb = top(a), top(b)
    got = matched_node_jaccard(a, b)
    assert got["nodes_matched"] == m
    assert got["node_jaccard_matched"] == pytest.approx(len(ta & tb) / len(ta | tb))
    assert got["node_jaccard_matched_chance"] == pytest.approx(expected_jaccard(m, m, CFG.n_forward))
