"""GraphConfig layout, edge counts and names against the reference layout formulas, name lookup, Graph helpers."""

from __future__ import annotations

import pytest

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.errors import DataError


def formula_edges(L: int, H: int, G: int | None = None, parallel: bool = False) -> int:
    """The reference library's layout formulas (G=None: no GQA)."""
    head_in = 3 * H if G is None else H + 2 * G
    per_layer = head_in + 2 + (H if parallel else 2 * H)  # 5H+2 / 4H+2 / 3H+2G+2 / 2H+2G+2
    return 1 + L * per_layer + (head_in + 1) * (H + 1) * L * (L - 1) // 2


@pytest.mark.parametrize(
    ("cfg", "edges", "nodes"),
    [
        (GraphConfig(12, 12), 32_491, 158),  # GPT-2 small
        (GraphConfig(24, 16), 231_877, 410),  # GPT-2 medium
        (GraphConfig(24, 16, parallel_attn_mlp=True), 231_493, 410),  # Pythia-1.4B
        (GraphConfig(32, 32, parallel_attn_mlp=True), 1_591_857, 1_058),  # Pythia-2.8B
        (GraphConfig(48, 25), 2_235_025, 1_250),  # GPT-2 XL
        (GraphConfig(16, 32, 8), 195_865, 530),  # Llama-3.2-1B, per group
        (GraphConfig(32, 32, 8), 805_681, 1_058),  # Llama-3-8B, per group
    ],
)
def test_edge_and_node_counts_match_the_table(cfg: GraphConfig, edges: int, nodes: int) -> None:
    assert cfg.n_edges == edges
    assert int(cfg.real_edge_mask.sum()) == edges
    assert len(cfg.node_names) == nodes == cfg.n_forward + 1
    G = cfg.n_kv_heads if cfg.grouped else None
    assert formula_edges(cfg.n_layers, cfg.n_heads, G, cfg.parallel_attn_mlp) == edges


def test_pythia_1_4b_five_percent() -> None:
    assert int(0.05 * GraphConfig(24, 16, parallel_attn_mlp=True).n_edges) == 11_574


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("kv", [None, 2])
def test_small_counts_follow_the_formula(parallel: bool, kv: int | None) -> None:
    for L in (1, 2, 3):
        cfg = GraphConfig(L, 4, kv, parallel)
        assert cfg.n_edges == formula_edges(L, 4, kv, parallel)
        assert cfg.n_backward == L * (4 + 2 * (kv or 4) + 1) + 1
        assert len(cfg.edge_names) == cfg.n_edges == len(set(cfg.edge_names))


def test_names_and_indices_reference_layout() -> None:
    cfg = GraphConfig(3, 4)
    names = set(cfg.edge_names)
    for name in [
        "input->a0.h0<q>",
        "a0.h1->m2",
        "m2->logits",
        "input->logits",
        "a0.h1->a2.h3<q>",
        "a0.h3->m0",
    ]:
        assert name in names
    assert "a1.h0->a1.h1<q>" not in names  # same layer
    assert "m2->m1" not in names
    # Backward layout is the reference library's when not grouped: q, k, v blocks of H, then the MLP.
    assert cfg.backward_names[:13] == [f"a0.h{h}<{x}>" for x in "qkv" for h in range(4)] + ["m0"]
    assert cfg.forward_names[:6] == ["input", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0"]
    assert cfg.edge_name(cfg.head_index(0, 1), cfg.mlp_in_index(2)) == "a0.h1->m2"
    # Canonical order is the real-edge mask's row-major order.
    src, dst = cfg.edge_coords
    assert [cfg.edge_name(s, d) for s, d in zip(src.tolist(), dst.tolist(), strict=True)] == cfg.edge_names


def test_parallel_mlp_does_not_read_its_own_layer() -> None:
    seq, par = set(GraphConfig(2, 2).edge_names), set(GraphConfig(2, 2, parallel_attn_mlp=True).edge_names)
    assert "a1.h0->m1" in seq and "a1.h0->m1" not in par
    assert "a0.h0->m1" in par and "input->m0" in par


def test_gqa_destinations_per_group() -> None:
    cfg = GraphConfig(2, 4, 2)
    assert cfg.grouped and cfg.groups == 2
    assert cfg.backward_names[:9] == [
        *(f"a0.h{h}<q>" for h in range(4)),
        "a0.g0<k>",
        "a0.g1<k>",
        "a0.g0<v>",
        "a0.g1<v>",
        "m0",
    ]
    assert cfg.head_group.tolist() == [0, 0, 1, 1]
    dst, node = cfg.destination_owners
    owners = {}
    for d, v in zip(dst.tolist(), node.tolist(), strict=True):
        owners.setdefault(cfg.backward_names[d], set()).add(cfg.node_names[v])
    assert owners["a1.g1<k>"] == {"a1.h2", "a1.h3"}
    assert owners["a0.h2<q>"] == {"a0.h2"}
    assert owners["logits"] == {"logits"}
    assert len(owners) == cfg.n_backward
    # destination_node keeps its meaning: the group's first head.
    assert cfg.node_names[int(cfg.destination_node[cfg.k_index(1, 1)])] == "a1.h2"


def test_bad_configs_raise() -> None:
    with pytest.raises(ValueError, match="multiple"):
        GraphConfig(2, 4, 3)
    with pytest.raises(ValueError):
        GraphConfig(0, 4)


def test_edge_index_lookup_and_unknown_names() -> None:
    cfg = GraphConfig(2, 4, 2)
    names = ["a0.h1->m1", "input->a1.g1<v>", "m1->logits"]
    src, dst = cfg.edge_index(names)
    assert [cfg.edge_name(s, d) for s, d in zip(src.tolist(), dst.tolist(), strict=True)] == names
    with pytest.raises(DataError, match="unknown edge 'a0.h1->a0.h2<q>'"):
        cfg.edge_index(["input->m0", "a0.h1->a0.h2<q>"])
    with pytest.raises(DataError, match="unknown edge 'input->a0.h0<k>'"):  # grouped model: a0.g0<k>
        cfg.edge_index(["input->a0.h0<k>"], "f.json: ")
    with pytest.raises(DataError, match="unknown edge 'nonsense'"):
        cfg.edge_index(["nonsense"])


def test_graph_helpers() -> None:
    cfg = GraphConfig(2, 2)
    g = Graph(cfg)
    assert g.count_edges() == 0 and g.nodes_in_graph[-1]
    g.full()
    assert g.count_edges() == cfg.n_edges and g.count_nodes() == cfg.n_forward
    g.scores[cfg.edge_index(["a0.h1->m1"])] = 2.5
    assert g.score_of("a0.h1->m1").item() == 2.5
    assert g.edge_scores().shape == (cfg.n_edges,)
    c = g.copy()
    c.scores.zero_()
    c.meta["x"] = 1
    assert g.score_of("a0.h1->m1").item() == 2.5 and "x" not in g.meta
    g.reset()
    assert g.count_edges() == 0 and g.nodes_in_graph_names() == ["logits"]
    assert "edges 0/" in repr(g)


def test_from_hf_config(tiny) -> None:
    assert GraphConfig.from_hf_config(tiny("tiny-llama").model.config).grouped
    neox = Graph.from_model(tiny("tiny-neox").model)
    assert neox.cfg.parallel_attn_mlp and neox.cfg.n_layers == 2


def test_package_exports_are_lazy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, circuitft.eap as eap\n"
        "assert 'circuitft.eap.attribute' not in sys.modules and 'circuitft.eap.select' not in sys.modules\n"
        "from circuitft.eap import Graph, select_circuit, circuit_overlap, load_graph\n"
        "import circuitft.eap.select as sel\n"
        "assert select_circuit is sel.select and callable(circuit_overlap) and Graph.__name__ == 'Graph'\n"
        "from circuitft.eap import select\n"
        "assert select is sel  # the submodule, not shadowed by the function\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
