"""Overlap measures between circuits, checked on hand-made edge sets."""

from __future__ import annotations

import math

import pytest
import torch

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.overlap import (
    circuit_nodes,
    edge_change,
    edge_flips,
    edge_jaccard,
    jaccard,
    node_change,
    node_jaccard,
    overlap,
    pairwise,
    top_k_edges,
    top_k_jaccard,
)
from circuitft.eap.select import prune
from circuitft.errors import ConfigError, DataError

CFG = GraphConfig(2, 2)


def circuit(*names: str, scores: dict[str, float] | None = None) -> Graph:
    g = Graph(CFG)
    g.in_graph[CFG.edge_index(list(names))] = True
    for name, s in (scores or {}).items():
        g.scores[CFG.edge_index([name])] = s
    return prune(g)


A = circuit("input->a0.h0<q>", "a0.h0->logits", "input->m1", "m1->logits")
B = circuit("input->a0.h0<q>", "a0.h0->logits", "input->a1.h1<v>", "a1.h1->logits")


def test_jaccard_of_edges_and_nodes() -> None:
    assert edge_jaccard(A, B) == pytest.approx(2 / 6)
    # nodes (logits left out): A {input, a0.h0, m1}, B {input, a0.h0, a1.h1}
    assert node_jaccard(A, B) == pytest.approx(2 / 4)
    assert edge_jaccard(A, A) == 1.0
    assert jaccard({"x", "y"}, {"y", "z"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0
    empty = Graph(CFG)
    assert edge_jaccard(empty, empty) == 1.0 and edge_jaccard(A, empty) == 0.0
    assert not circuit_nodes(A)[-1]


def test_node_change_prior_work_definition() -> None:
    # |N_A Δ N_B| / |N_A| = |{m1, a1.h1}| / 3
    assert node_change(A, B) == pytest.approx(2 / 3)
    assert node_change(A, A) == 0.0
    assert math.isnan(node_change(Graph(CFG), A))
    assert node_change({"a", "b"}, {"b", "c", "d"}) == pytest.approx(3 / 2)


def test_top_k_sets_and_edge_change() -> None:
    a, b = Graph(CFG), Graph(CFG)
    a.scores[CFG.edge_index(["m1->logits", "input->m0", "a0.h1->m1", "a1.h0->logits"])] = torch.tensor(
        [5.0, -4.0, 3.0, 0.1]
    )
    b.scores[CFG.edge_index(["m1->logits", "input->m0", "a1.h0->logits", "a0.h1->m1"])] = torch.tensor(
        [-5.0, 1.0, 4.0, 0.2]
    )
    top_a = top_k_edges(a, 3)
    assert int(top_a.sum()) == 3 and top_a[CFG.edge_index(["input->m0"])].all()  # |score|, not signed
    # T_a = {m1->logits, input->m0, a0.h1->m1}; T_b = {m1->logits, a1.h0->logits, input->m0}
    assert edge_change(a, b, k=3) == pytest.approx(1 - 2 / 3)
    assert top_k_jaccard(a, b, k=3) == pytest.approx(2 / 4)
    assert edge_change(a, a, k=3) == 0.0
    # default k: 5% of the edges
    assert int(top_k_edges(a).sum()) == int(0.05 * CFG.n_edges)
    with pytest.raises(ConfigError, match="k must be an integer"):
        edge_change(a, b, k=0)


def test_overlap_summary_and_flips() -> None:
    o = overlap(A, B, k=2)
    assert o["edges_a"] == 4 and o["edges_b"] == 4 and o["edges_shared"] == 2
    assert o["nodes_shared"] == 2 and o["edge_jaccard"] == pytest.approx(1 / 3)
    assert edge_flips(A, B) == {"added": 2, "removed": 2, "kept": 2}


def test_pairwise_across_tasks_and_mismatch() -> None:
    table = pairwise({"add": A, "sub": B}, "edge_jaccard")
    assert table["add"]["add"] == 1.0 and table["add"]["sub"] == table["sub"]["add"] == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="unknown overlap measure"):
        pairwise({"a": A}, "cosine")
    with pytest.raises(DataError, match="different models"):
        edge_jaccard(A, Graph(GraphConfig(3, 2)))
