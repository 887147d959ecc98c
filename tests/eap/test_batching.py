"""Rows are batched by length inside attribute and evaluate; results come back in input order."""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from circuitft.data.pairs import tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.eap.attribute import attribute
from circuitft.eap.evaluate import evaluate
from circuitft.eap.forward import length_batches
from circuitft.eap.graph import Graph
from circuitft.errors import ConfigError


def sum_rows(n: int, seed: int = 0, long_terms: int | None = None) -> list[PromptRow]:
    """ "a + b + ... =" with 1-6 terms (lengths differ), the last term corrupted; optionally one long row."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = long_terms if long_terms and i == n // 2 else rng.randint(2, 6)
        terms = [rng.randint(1, 9) for _ in range(k)]
        other = terms[:-1] + [terms[-1] % 9 + 1]
        ans, wrong = sum(terms) % 10, sum(other) % 10
        wrong = wrong if wrong != ans else (ans + 1) % 10
        clean, corrupted = (" + ".join(map(str, t)) + " =" for t in (terms, other))
        rows.append(PromptRow(clean, corrupted, str(ans), str(wrong)))
    return rows


def test_batches_group_similar_lengths_and_cover_every_row_once(tiny):
    loaded = tiny("tiny-gpt2")
    pairs = tokenize_pairs(sum_rows(11), loaded.tokenizer, "sums")
    lengths = pairs.attention_mask.sum(1)
    assert len(set(lengths.tolist())) >= 4  # the rows really differ in length
    seen, previous_max = [], 0
    for rows, batch in length_batches(pairs, 3):
        seen += rows.tolist()
        assert int(lengths[rows].min()) >= previous_max  # sorted: no batch mixes short rows with long ones
        previous_max = int(lengths[rows].max())
        assert batch.clean_ids.shape[1] == previous_max  # padded to its own longest row only
        assert torch.equal(batch.clean_ids[:, :4], pairs.clean_ids[rows, :4])
    assert sorted(seen) == list(range(len(pairs))) and seen != list(range(len(pairs)))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
def test_evaluate_returns_input_order_and_equals_one_row_at_a_time(tiny, name):
    loaded = tiny(name)
    model = loaded.model
    pairs = tokenize_pairs(sum_rows(10, seed=1), loaded.tokenizer, "sums")
    graph = attribute(model, Graph.from_model(model), pairs, ig_steps=2, batch_size=4, progress=False)
    k = graph.n_edges // 5
    top = graph.scores.abs().masked_fill(~graph.cfg.real_edge_mask, -1).flatten().topk(k).indices
    graph.in_graph = (
        torch.zeros_like(graph.in_graph).flatten().index_fill_(0, top, True).view_as(graph.scores)
    )
    batched = evaluate(model, graph, pairs, metric="logit_diff", batch_size=4, progress=False)
    single = evaluate(model, graph, pairs, metric="logit_diff", batch_size=1, progress=False)
    for field in ("clean", "corrupted", "circuit", "kl_corr_clean", "kl_corr_circ"):
        a, b = getattr(batched, field), getattr(single, field)
        assert torch.allclose(a, b, atol=1e-5), field
    assert torch.equal(batched.model_correct, single.model_correct)
    assert not torch.allclose(batched.circuit, batched.circuit.flip(0))  # the order is informative
    # attribution is a mean over rows: the same whatever the batching
    again = attribute(model, Graph.from_model(model), pairs, ig_steps=2, batch_size=1, progress=False)
    assert torch.allclose(graph.scores, again.scores, atol=1e-5 * float(again.scores.abs().max()))


def test_a_row_over_four_times_the_median_length_warns_once(tiny):
    loaded = tiny("tiny-gpt2")
    pairs = tokenize_pairs(sum_rows(9, seed=2, long_terms=24), loaded.tokenizer, "long-sums")
    graph = Graph.from_model(loaded.model)
    with pytest.warns(UserWarning, match=r"task 'long-sums': row 5 has \d+ tokens, more than 4x the median"):
        attribute(loaded.model, graph, pairs, ig_steps=1, batch_size=4, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attribute(loaded.model, graph, pairs, ig_steps=1, batch_size=4, progress=False)
    assert not [w for w in caught if "median" in str(w.message)]
    short = tokenize_pairs(sum_rows(9, seed=2), loaded.tokenizer, "short-sums")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(length_batches(short, 4))
    assert not [w for w in caught if "median" in str(w.message)]


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
@pytest.mark.parametrize("method", ["EAP-IG-inputs", "clean-corrupted"])
def test_stacked_gradient_passes_equal_one_pass_at_a_time(tiny, metric, method):
    """All steps in one stacked run (the default) == one run per step; multi-token answers included."""
    from digits import digit_rows

    loaded = tiny("tiny-qwen2")
    pairs = tokenize_pairs(digit_rows(7, two_token_answers=True), loaded.tokenizer, "add")

    def run(per_pass: int | None) -> torch.Tensor:
        graph = Graph.from_model(loaded.model)
        options = {"method": method, "metric": metric, "ig_steps": 4, "batch_size": 3, "progress": False}
        return attribute(loaded.model, graph, pairs, steps_per_pass=per_pass, **options).scores

    stacked, single, pairs_of_two = run(None), run(1), run(3)
    assert stacked.abs().max() > 0
    for other in (single, pairs_of_two):
        assert torch.allclose(stacked, other, atol=1e-5 * float(stacked.abs().max()))
    with pytest.raises(ConfigError, match="steps_per_pass must be positive"):
        run(0)
