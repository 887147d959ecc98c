"""Collapsed graphs (q/k/v merged per head): collapsing, FinetuneCircuits' files, overlap by hand."""

from __future__ import annotations

import json

import pytest
import torch

from circuitft.eap.collapsed import (
    CollapsedGraph,
    collapse,
    load_circuit,
    read_collapsed_json,
    write_collapsed_json,
)
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.io import load_graph, write_json
from circuitft.eap.overlap import edge_flips, edge_jaccard, node_change, node_jaccard, overlap, pairwise
from circuitft.eap.select import apply_topn, prune
from circuitft.errors import DataError

CFG = GraphConfig(2, 2)


def full(edges: dict[str, float]) -> Graph:
    """A full graph whose circuit is ``edges`` (name -> score), pruned."""
    g = Graph(CFG)
    for name, score in edges.items():
        g.in_graph[CFG.edge_index([name])] = True
        g.scores[CFG.edge_index([name])] = score
    return prune(g)


def fc_file(path, edges: dict[str, float], nodes: list[str]):
    """A graph file as FinetuneCircuits' collapse_qkv.py left it: old cfg, {node: bool}, circuit edges only."""
    d = {
        "cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False},
        "nodes": {n: n in nodes for n in CFG.node_names},
        "edges": {name: {"score": score, "in_graph": True} for name, score in edges.items()},
    }
    path.write_text(json.dumps(d))
    return path


# F has 6 full edges; collapsed, input->a0.h0<k> and <v> become one edge: 5 collapsed edges.
F = full(
    {
        "input->a0.h0<k>": 1.0,
        "input->a0.h0<v>": -0.5,
        "a0.h0->a1.h1<q>": 2.0,
        "a1.h1->logits": 3.0,
        "input->a1.h0<v>": 0.25,
        "a1.h0->logits": 0.5,
    }
)
C_EDGES = {
    "input->a0.h0": 4.0,
    "a0.h0->a1.h1": 1.0,
    "a1.h1->logits": 2.0,
    "input->m0": 1.0,
    "m0->logits": 1.0,
}
C_NODES = ["input", "a0.h0", "a1.h1", "m0", "logits"]


def test_collapse_merges_qkv_and_sums_scores():
    f = full({"input->a0.h0<q>": 1.0, "input->a0.h0<v>": -0.5, "a0.h0->a1.h1<k>": 3.0, "a1.h1->logits": 2.0})
    f.scores[CFG.edge_index(["input->a0.h0<k>"])] = 2.0  # scored, not in the circuit
    c = collapse(f)
    assert isinstance(c, CollapsedGraph)
    assert c.edges_in_graph() == ["input->a0.h0", "a0.h0->a1.h1", "a1.h1->logits"]
    lookup = CFG.node_lookup
    score = lambda g, s, d: float(g.scores[lookup[s], lookup[d] - 1])  # noqa: E731
    assert score(c, "input", "a0.h0") == pytest.approx(1.0 + 2.0 - 0.5), "all three scores summed"
    assert score(collapse(f, scores="circuit"), "input", "a0.h0") == pytest.approx(0.5), "only circuit edges"
    assert score(c, "a1.h1", "logits") == 2.0, "logits edges are copied"
    # layer 0: 2 heads x {input} + m0 x {input, a0.h0, a0.h1}; layer 1: 2 heads x 4 sources + m1 x 6;
    # logits x all 7 sources. The full graph has three times the head edges: 6 + 3 + 24 + 6 + 7 = 46.
    assert c.n_edges == 2 * 1 + 3 + 2 * 4 + 6 + 7 == 26 and CFG.n_edges == 46
    assert torch.equal(c.nodes_in_graph, f.nodes_in_graph)


def test_collapsed_edge_count_matches_the_model():
    # One collapsed edge per (source, destination node): layer l's heads and (non-parallel) MLP see
    # 1 + l*(H+1) sources (+H for the MLP), logits sees all n_forward sources.
    for cfg in (
        GraphConfig(2, 2),
        GraphConfig(3, 4, parallel_attn_mlp=True),
        GraphConfig(2, 4, n_kv_heads=2),
    ):
        c = CollapsedGraph.empty(cfg)
        expected = (
            sum(
                cfg.n_heads * cfg.attn_prev(l) + cfg.mlp_prev(l)
                for l in range(cfg.n_layers)  # noqa: E741
            )
            + cfg.n_forward
        )
        assert c.n_edges == expected
        assert collapse(Graph(cfg).full()).count_edges() == expected, "a full circuit collapses to all edges"


def test_grouped_query_attention_collapses_kv_into_every_head_of_the_group():
    cfg = GraphConfig(1, 4, n_kv_heads=2)
    g = Graph(cfg)
    g.in_graph[cfg.edge_index(["input->a0.g0<k>"])] = True
    g.scores[cfg.edge_index(["input->a0.g0<k>"])] = 2.0
    g.scores[cfg.edge_index(["input->a0.h1<q>"])] = 1.0
    c = collapse(g)
    assert c.edges_in_graph() == ["input->a0.h0", "input->a0.h1"], "heads 0 and 1 read key/value group 0"
    assert float(c.scores[0, 1]) == 3.0 and float(c.scores[0, 0]) == 2.0 and float(c.scores[0, 2]) == 0.0


def test_jaccard_of_a_collapsed_file_and_a_full_graph_by_hand(tmp_path):
    c = load_circuit(fc_file(tmp_path / "fc.json", C_EDGES, C_NODES))
    assert isinstance(c, CollapsedGraph) and c.count_edges() == 5
    # collapse(F) = {input->a0.h0, a0.h0->a1.h1, a1.h1->logits, input->a1.h0, a1.h0->logits}
    # C          = {input->a0.h0, a0.h0->a1.h1, a1.h1->logits, input->m0, m0->logits}
    # shared 3, union 7. Nodes (logits left out): F {input, a0.h0, a1.h1, a1.h0}, C {input, a0.h0, a1.h1, m0}.
    assert edge_jaccard(c, F) == pytest.approx(3 / 7) == edge_jaccard(F, c)
    assert node_jaccard(c, F) == pytest.approx(3 / 5)
    assert node_change(c, F) == pytest.approx(2 / 4)
    assert edge_flips(c, F) == {"added": 2, "removed": 2, "kept": 3}
    o = overlap(c, F)
    assert o["edge_jaccard"] == pytest.approx(3 / 7) and o["collapsed"] is True
    assert (o["edges_a"], o["edges_b"], o["edges_shared"]) == (5, 5, 3)
    assert "top_k_jaccard" not in o and "edge_change" not in o, "top-k needs every edge's score"
    table = pairwise({"c": c, "f": F})
    assert table["c"]["f"] == pytest.approx(3 / 7) and table["f"]["f"] == 1.0
    assert "top_k_jaccard" in overlap(F, F), "two full graphs keep every measure"


def test_collapse_reproduces_finetune_circuits_collapse_of_a_full_file(tmp_path):
    # Their collapse, restated: keep in-circuit edges, drop <q>/<k>/<v> from the name, add up the scores.
    g = Graph(CFG)
    gen = torch.Generator().manual_seed(0)
    g.scores = torch.randn(g.scores.shape, generator=gen) * CFG.real_edge_mask
    apply_topn(g, 12, absolute=True, prune=True)
    write_json(g, tmp_path / "full.json")
    merged: dict[str, float] = {}
    for name, e in json.loads((tmp_path / "full.json").read_text())["edges"].items():
        if e["in_graph"]:
            key = name.replace("<q>", "").replace("<k>", "").replace("<v>", "")
            merged[key] = merged.get(key, 0.0) + e["score"]
    write_collapsed_json(collapse(g, scores="circuit"), tmp_path / "mine.json")
    mine = json.loads((tmp_path / "mine.json").read_text())["edges"]
    assert set(mine) == set(merged) and len(merged) > 3
    assert all(mine[k]["score"] == pytest.approx(v, abs=1e-6) for k, v in merged.items())
    assert edge_jaccard(read_collapsed_json(tmp_path / "mine.json"), g) == 1.0


def test_files_round_trip_and_kinds(tmp_path):
    c = load_circuit(fc_file(tmp_path / "fc.json", {**C_EDGES, "m0->logits": None}, C_NODES))
    assert float(c.scores[CFG.node_lookup["m0"], CFG.n_forward - 1]) == 0.0, "a null score reads as 0"
    write_collapsed_json(c, tmp_path / "again.json")
    again = read_collapsed_json(tmp_path / "again.json", cfg=CFG)
    assert torch.equal(again.in_graph, c.in_graph) and torch.equal(again.scores, c.scores)
    assert torch.equal(again.nodes_in_graph, c.nodes_in_graph)
    write_json(F, tmp_path / "full.json")
    assert isinstance(load_circuit(tmp_path / "full.json"), Graph)
    with pytest.raises(DataError, match=r"fc.json: a collapsed graph \(one edge per head.*load_circuit"):
        load_graph(tmp_path / "fc.json")


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ({"input->a0.h0": 1.0, "input->a0.h1<q>": 1.0}, r"edge 'input->a0.h1<q>' is not a collapsed edge"),
        ({"input->a0.h0": 1.0, "a1.h0->a0.h1": 1.0}, r"edge 'a1.h0->a0.h1': its source is not upstream"),
        ({"input->a0.h0": 1.0, "input->a9.h0": 1.0}, r"edge 'input->a9.h0' is not a collapsed edge"),
        ({"input->a0.h0": "x"}, r"edge 'input->a0.h0': score must be a number, got 'x'"),
    ],
)
def test_bad_collapsed_files_one_line(tmp_path, edges, match):
    with pytest.raises(DataError, match=match):
        read_collapsed_json(fc_file(tmp_path / "bad.json", edges, ["input"]))


def test_collapsed_file_of_another_model_shape(tmp_path):
    path = fc_file(tmp_path / "fc.json", C_EDGES, C_NODES)
    with pytest.raises(DataError, match=r"graph has n_layers=2, n_heads=2.*model has n_layers=3"):
        load_circuit(path, cfg=GraphConfig(3, 2))
    with pytest.raises(DataError, match=r"cannot compare circuits of different models"):
        edge_jaccard(load_circuit(path), collapse(Graph(GraphConfig(3, 2))))
