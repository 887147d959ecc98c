"""The public API (`import circuitft as cf`): each call agrees with the modules it wraps."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import circuitft as cf
from circuitft.eap.attribute import attribute
from circuitft.eap.evaluate import evaluate, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.select import select
from circuitft.errors import CircuitftError


@pytest.fixture(scope="module")
def model():
    return cf.load("tiny-gpt2")


@pytest.fixture(scope="module")
def pairs(model):
    return cf.make_pairs("AddSub", model, n=8, seed=3, lo=0, hi=9, prefix="")


def test_load_gives_a_frozen_merged_model(model):
    assert not any(p.requires_grad for p in model.model.parameters())
    assert not model.model.training
    assert not hasattr(model.model, "peft_config")


def test_find_circuit_equals_attribute_then_select(model, pairs):
    ours = cf.find_circuit(model, pairs, method="EAP", metric="logprob", progress=False)
    graph = Graph.from_model(model.model)
    attribute(model.model, graph, pairs, method="EAP", metric="logprob", progress=False)
    select(graph, top_frac=0.05)
    assert torch.equal(ours.scores, graph.scores)
    if graph.count_edges() > 0:
        assert torch.equal(ours.in_graph, graph.in_graph)
        assert ours.meta["selection"] == {
            "option": "top_frac",
            "value": 0.05,
            "absolute": True,
            "prune": True,
        }
    else:  # the top 5% prunes to nothing on this tiny graph: the default widens to the smallest connected size
        n = ours.meta["selection"]["value"]
        assert ours.meta["selection"] == {
            "option": "top_n", "value": n, "absolute": True, "prune": True, "default_top_frac": 0.05
        }  # fmt: skip
        assert ours.count_edges() >= 1 and n > int(0.05 * graph.n_edges)
        select(graph, top_n=n)
        assert torch.equal(ours.in_graph, graph.in_graph)
        select(graph, top_n=n - 1)
        assert graph.count_edges() == 0  # the smallest size that keeps an edge


def test_evaluate_circuit_equals_evaluate(model, pairs):
    circuit = cf.find_circuit(model, pairs, method="EAP", metric="logprob", top_n=30, progress=False)
    got = cf.evaluate_circuit(model, circuit, pairs, progress=False)  # metric taken from the circuit
    want = faithfulness(evaluate(model.model, circuit, pairs, metric="logprob", progress=False))
    assert got["faithfulness"] == pytest.approx(float(want["faithfulness"]), nan_ok=True)
    assert got["circuit_accuracy"] == pytest.approx(float(want["circuit_accuracy"]))
    assert got["n_edges"] == circuit.count_edges()


def test_top_edges_is_a_ranked_named_table(model, pairs):
    circuit = cf.find_circuit(model, pairs, method="EAP", metric="logprob", top_n=10, progress=False)
    table = circuit.top_edges(5)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == [
        "edge",
        "source",
        "destination",
        "score",
        "in_circuit",
    ]
    flat = circuit.edge_scores()
    names = circuit.cfg.edge_names
    best = sorted(range(len(flat)), key=lambda i: -abs(float(flat[i])))[:5]
    assert table["edge"].tolist() == [names[i] for i in best]
    assert table["score"].tolist() == pytest.approx([float(flat[i]) for i in best])
    assert (table["edge"] == table["source"] + "->" + table["destination"]).all()
    inside = circuit.top_edges(1000, circuit_only=True)
    assert len(inside) == circuit.count_edges() and inside["in_circuit"].all()
    with pytest.raises(CircuitftError, match="positive integer"):
        circuit.top_edges(0)


def test_compare_identical_and_different_circuits(model, pairs):
    a = cf.find_circuit(model, pairs, method="EAP", metric="logprob", top_n=30, progress=False)
    assert cf.compare(a, a)["edge_jaccard"] == 1.0
    b = a.copy()
    select(b, top_n=10)
    assert cf.compare(a, b)["edge_jaccard"] < 1.0


def test_bad_input_is_a_circuitft_error(model):
    with pytest.raises(CircuitftError, match="not both"):
        cf.load("tiny-gpt2", adapter="x", checkpoint="y")
    with pytest.raises(CircuitftError, match="file not found"):
        cf.load(checkpoint="/nonexistent/last.ckpt")
    with pytest.raises(CircuitftError, match="not a peft adapter folder"):
        cf.load("tiny-gpt2", adapter="/nonexistent")
    with pytest.raises(CircuitftError, match="LoadedModel"):
        cf.make_pairs("AddSub", model.model, n=2)


def test_hold_out_and_heldout_scores(model):
    rows = cf.make_pairs("AddSub", model, n=10, seed=4, lo=0, hi=19, prefix="")
    discovery, heldout = cf.hold_out(rows, 0.3)
    assert (len(discovery), len(heldout)) == (7, 3)
    assert not {r.clean for r in discovery.rows} & {r.clean for r in heldout.rows}
    circuit = cf.find_circuit(model, discovery, method="EAP", metric="logprob", top_n=30, progress=False)
    got = cf.evaluate_circuit(model, circuit, discovery, heldout=heldout, progress=False)
    alone = cf.evaluate_circuit(model, circuit, heldout, progress=False)
    assert got["n_examples"] == 7 and got["n_examples_heldout"] == 3
    for key in ("faithfulness", "model_accuracy", "circuit_accuracy", "metric_gap"):
        assert got[f"{key}_heldout"] == pytest.approx(alone[key], nan_ok=True), key
    assert "kl_recovered_pct_heldout" not in got  # logprob metric
    # held-out rows that are discovery rows are left out
    both = cf.evaluate_circuit(model, circuit, discovery, heldout=rows, progress=False)
    assert both["n_examples_heldout"] == 3
    with pytest.raises(CircuitftError, match="hold_out: the held-out share"):
        cf.hold_out(rows, 1.0)
