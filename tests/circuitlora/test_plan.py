"""CircuitLoRA plan arithmetic: edge deltas, layer scores per assignment, critical layers, parameter counts."""

from __future__ import annotations

import pytest

from circuitft.circuitlora import plan as P
from circuitft.circuitlora.options import CircuitLoRAOptions
from circuitft.circuitlora.probe import lora_shapes, plan_record
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.errors import ConfigError


def _pair(cfg: GraphConfig, edges: dict[str, tuple[float | None, float | None]]) -> tuple[Graph, Graph]:
    """Two graphs: ``edges`` maps a name to (score before, score after); None: not in that circuit (score 9)."""
    before, after = Graph(cfg), Graph(cfg)
    for name, scores in edges.items():
        (s,), (d,) = (t.tolist() for t in cfg.edge_index([name]))
        for g, score in zip((before, after), scores, strict=True):
            g.scores[s, d] = 9.0 if score is None else score  # a big score off the circuit must not count
            g.in_graph[s, d] = score is not None
    return before, after


# Two layers, one head: sources input, a0.h0, m0, a1.h0, m1.
EDGES_2L = {
    "input->a0.h0<q>": (0.5, -0.25),  # both circuits: |-0.25 - 0.5| = 0.75; source 0, destination 0
    "m0->a1.h0<v>": (-0.4, None),  # before only: 0.4; source 0, destination 1
    "input->m1": (None, 0.3),  # after only: 0.3; source 0 (input), destination 1
    "a1.h0->logits": (1.0, 1.5),  # both: 0.5; source 1, destination: logits -> last layer (1)
    "a0.h0->m0": (None, None),  # in neither circuit: 0 whatever its scores
}


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("destination", [0.75, 0.4 + 0.3 + 0.5]),
        ("source", [0.75 + 0.4 + 0.3, 0.5]),
        ("both", [0.5 * (0.75 + 0.4 + 0.3) + 0.5 * 0.75, 0.5 * 0.5 + 0.5 * (0.4 + 0.3 + 0.5)]),
    ],
)
def test_layer_scores_equal_a_hand_computation(assignment, expected):
    before, after = _pair(GraphConfig(n_layers=2, n_heads=1), EDGES_2L)
    assert P.layer_scores(before, after, assignment) == pytest.approx(
        expected, rel=1e-6
    )  # scores are stored as float32


@pytest.mark.parametrize(
    "assignment, expected",
    [
        # grouped-query attention: a2.g0<k> is layer 2's key input; m0 sits in layer 0, a1.h1 in layer 1
        ("destination", [0.0, 0.0, 2.0 + 0.25 + 0.125]),
        ("source", [2.0, 0.25, 0.125]),
        ("both", [1.0, 0.125, 1.0 + 0.125 + 0.0625 + 0.0625]),  # m2->logits: both halves in layer 2
    ],
)
def test_layer_scores_with_grouped_query_attention(assignment, expected):
    cfg = GraphConfig(n_layers=3, n_heads=2, n_kv_heads=1)
    edges = {
        "m0->a2.g0<k>": (-1.0, 1.0),  # both: 2.0
        "a1.h1->logits": (0.25, None),  # before only: 0.25
        "m2->logits": (None, -0.125),  # after only: 0.125
    }
    before, after = _pair(cfg, edges)
    assert P.layer_scores(before, after, assignment) == pytest.approx(
        expected, rel=1e-6
    )  # scores are stored as float32


def test_edge_deltas_are_zero_off_both_circuits_and_shapes_must_agree():
    cfg = GraphConfig(n_layers=2, n_heads=1)
    before, after = _pair(cfg, EDGES_2L)
    delta = P.edge_deltas(before, after)
    assert float(delta.sum()) == pytest.approx(0.75 + 0.4 + 0.3 + 0.5)
    with pytest.raises(ConfigError, match="different shapes"):
        P.edge_deltas(before, Graph(GraphConfig(n_layers=3, n_heads=1)))
    with pytest.raises(ConfigError, match="assignment"):
        P.layer_scores(before, after, "middle")  # type: ignore[arg-type]


def test_critical_layers_top_k_and_mean_plus_std():
    scores = [5.0, 1.0, 5.0, 0.0, 3.0, 9.0]
    assert P.critical_layers(scores, "top_k", 3) == [0, 2, 5]  # 9, then the tie 5/5 both in
    assert P.critical_layers(scores, "top_k", 2) == [0, 5]  # tie at 5: the lower layer wins
    mean = sum(scores) / 6
    std = (sum((s - mean) ** 2 for s in scores) / 6) ** 0.5  # population std: 3.0550...; threshold 6.88
    assert P.mean_plus_std(scores) == pytest.approx(mean + std)
    assert P.critical_layers(scores, "mean_std") == [5]
    with pytest.raises(ConfigError, match="between 1 and the number of layers"):
        P.critical_layers(scores, "top_k", 7)


def test_module_layer_from_names():
    assert P.module_layer("model.layers.12.self_attn.q_proj") == 12
    assert P.module_layer("transformer.h.3.mlp.c_fc") == 3
    assert P.module_layer("gpt_neox.layers.0.attention.query_key_value") == 0
    with pytest.raises(ConfigError, match="no layer number"):
        P.module_layer("lm_head")


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_parameter_counts_equal_peft_own_count(spec):
    from circuitft.models.loading import load_model
    from circuitft.models.lora import wrap_lora

    probe = wrap_lora(load_model(spec).model, 2, 4.0, 0.0)
    shapes = lora_shapes(probe)
    opts = CircuitLoRAOptions(k=1, r_critical=6, alpha_critical=12, r_other=3, alpha_other=6)
    record = plan_record(shapes, [0.1, 0.9], [1], opts)
    planned = wrap_lora(
        load_model(spec).model,
        record["r"],
        record["alpha"],
        0.0,
        rank_pattern=record["rank_pattern"],
        alpha_pattern=record["alpha_pattern"],
    )
    trainable, _ = planned.get_nb_trainable_parameters()
    assert (
        record["parameters"]["plan"]
        == trainable
        == sum(p.numel() for p in planned.parameters() if p.requires_grad)
    )
    r_u = record["parameters"]["uniform_rank_equal_budget"]
    uniform = wrap_lora(load_model(spec).model, r_u, None, 0.0)
    assert record["parameters"]["uniform_equal_budget"] == uniform.get_nb_trainable_parameters()[0]
    assert r_u == 4 or spec == "tiny-neox"  # same shapes in both layers: (6 + 3) / 2 = 4.5 -> 4 (tie: lower)
    # the critical layer's modules have rank 6, the others 3 (peft's own per-module rank)
    for name, module in planned.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            key = name.removeprefix("base_model.model.")
            assert module.r["default"] == record["ranks"][key] == (6 if P.module_layer(key) == 1 else 3)
            assert module.scaling["default"] == pytest.approx(2.0)  # alpha / r = 12/6 = 6/3


def test_equal_budget_rank_is_the_closest_uniform_rank():
    shapes = {"a.0.x": (10, 10), "a.1.x": (10, 10)}  # 40 parameters per unit of rank
    assert P.equal_budget_rank(shapes, 40 * 7) == 7
    assert P.equal_budget_rank(shapes, 40 * 7 + 25) == 8
    assert P.equal_budget_rank(shapes, 3) == 1
    assert P.lora_parameters(shapes, {"a.0.x": 2, "a.1.x": 5}) == 2 * 20 + 5 * 20
