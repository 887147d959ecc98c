"""Several circuits in one pass: equal to evaluating each alone (evaluate is its one-circuit case); size-curve masks; bad sizes."""

from __future__ import annotations

import pytest
import torch
from digits import digit_rows

from circuitft.data.pairs import tokenize_pairs
from circuitft.eap.attribute import attribute
from circuitft.eap.curve import check_sizes, size_masks
from circuitft.eap.evaluate import evaluate, evaluate_circuits, faithfulness
from circuitft.eap.graph import Graph
from circuitft.errors import ConfigError


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_shared_runs_equal_separate_evaluations(tiny, name):
    loaded = tiny(name)
    model = loaded.model
    pairs = tokenize_pairs(digit_rows(6), loaded.tokenizer, "add")
    graph = attribute(model, Graph.from_model(model), pairs, ig_steps=2, batch_size=4, progress=False)
    sizes = (0.01, 0.1, 0.5, 1.0)
    masks = size_masks(graph, sizes)
    assert not graph.in_graph.any(), "the graph's own circuit is left alone"
    counts = [int(m.sum()) for m in masks]
    assert counts == sorted(counts) and counts[-1] == graph.n_edges  # 100%: every edge (pruning keeps all)
    together = evaluate_circuits(model, graph.cfg, masks, pairs, batch_size=4)
    for mask, res in zip(masks, together, strict=True):
        graph.in_graph = mask
        alone = evaluate(model, graph, pairs, batch_size=4, progress=False)
        assert res.n_edges == alone.n_edges
        for field in ("clean", "corrupted", "circuit", "kl_corr_clean", "kl_corr_circ"):
            assert torch.allclose(getattr(res, field), getattr(alone, field), atol=1e-5), field
            assert torch.equal(getattr(res, field), getattr(alone, field)), f"{field}: one loop, same numbers"
        assert torch.equal(res.circuit_correct, alone.circuit_correct)
    assert faithfulness(together[-1])["faithfulness"] == pytest.approx(1.0, abs=1e-4)  # every edge


@pytest.mark.parametrize("bad", [[0.0], [1.5], [-0.1], [True], []])
def test_sizes_outside_unit_interval_are_refused(bad):
    with pytest.raises(ConfigError, match=r"\(0, 1\]|at least one"):
        check_sizes(bad)


def test_sizes_sorted_and_deduplicated():
    assert check_sizes([0.5, 0.1, 0.5, 1]) == (0.1, 0.5, 1.0)
