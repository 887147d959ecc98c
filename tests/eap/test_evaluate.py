"""Circuit evaluation by patching: full and empty circuits, single-edge patches by hand, faithfulness."""

from __future__ import annotations

import math

import pytest
import torch
from digits import digit_rows

from circuitft.data.pairs import tokenize_pairs
from circuitft.eap.evaluate import EvalResult, evaluate, faithfulness
from circuitft.eap.graph import Graph
from circuitft.errors import ConfigError
from circuitft.models.tiny import tiny_specs

ARCHS = tiny_specs()[:-1]  # every family (not the benchmark-sized model)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_full_circuit_is_clean_and_empty_circuit_is_corrupted(tiny, name, metric):
    loaded = tiny(name)
    model = loaded.model
    pairs = tokenize_pairs(digit_rows(10, two_token_answers=True), loaded.tokenizer, "add")
    graph = Graph.from_model(model).full()
    full = evaluate(model, graph, pairs, metric=metric, batch_size=4, progress=False)
    assert torch.allclose(full.circuit, full.clean, atol=1e-5)
    assert torch.equal(full.circuit_correct, full.model_correct)
    assert torch.allclose(full.kl_corr_circ, full.kl_corr_clean, atol=1e-5)
    graph.in_graph[:] = False
    empty = evaluate(model, graph, pairs, metric=metric, batch_size=4, progress=False)
    assert empty.n_edges == 0 and len(empty) == len(pairs)
    assert torch.allclose(empty.circuit, empty.corrupted, atol=1e-4)
    assert torch.allclose(empty.kl_corr_circ, torch.zeros(len(pairs)), atol=1e-5)
    assert (empty.kl_corr_clean > 1e-4).all()
    f_full, f_empty = faithfulness(full), faithfulness(empty)
    assert f_full["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    assert f_empty["faithfulness"] == pytest.approx(0.0, abs=1e-3)
    if metric == "kl":
        assert f_full["kl_recovered_pct"] == pytest.approx(100.0, abs=1e-3)
        assert f_empty["kl_recovered_pct"] == pytest.approx(0.0, abs=1e-2)
    else:  # defined for the kl metric only
        assert "kl_recovered_pct" not in f_full and "kl_faithfulness_pct" not in f_full
    if metric == "kl":
        assert torch.allclose(full.clean, torch.zeros(len(pairs)), atol=1e-6)


# Output columns of layer 0's q (head 1) or k (first k/v group) inside each architecture's projection.
def _columns(name: str, model, kind: str):
    cfg = model.config
    h = cfg.num_attention_heads
    d = cfg.hidden_size
    dh = d // h
    if name == "tiny-gpt2":
        attn = model.transformer.h[0].attn
        return attn.c_attn, (dh if kind == "q" else d) + torch.arange(dh)
    if name == "tiny-neox":
        attn = model.gpt_neox.layers[0].attention
        return attn.query_key_value, (3 * dh if kind == "q" else dh) + torch.arange(dh)  # [H, (q, k, v), dh]
    if name == "tiny-gptj":
        attn = model.transformer.h[0].attn
        return (attn.q_proj, dh + torch.arange(dh)) if kind == "q" else (attn.k_proj, torch.arange(dh))
    attn = model.model.layers[0].self_attn
    if name == "tiny-phi3":  # [q (H*dh) | k (G*dh) | v]
        return attn.qkv_proj, (dh if kind == "q" else d) + torch.arange(dh)
    return (attn.q_proj, dh + torch.arange(dh)) if kind == "q" else (attn.k_proj, torch.arange(dh))


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("kind", ["q", "k"])
def test_single_input_edge_patch_equals_corrupted_projection_columns(tiny, name, kind):
    """Removing only input -> a0.h1<q> (or a0.{h,g}0<k>) = clean run with those projection columns taken
    from the corrupted run (layer 0 reads only the embeddings, and positions are shared)."""
    loaded = tiny(name)
    model = loaded.model
    pairs = tokenize_pairs(digit_rows(6, two_token_answers=True), loaded.tokenizer, "add")
    graph = Graph.from_model(model).full()
    dest = graph.cfg.q_index(0, 1) if kind == "q" else graph.cfg.k_index(0, 0)
    graph.in_graph[0, dest] = False
    result = evaluate(model, graph, pairs, metric="logprob", batch_size=6, progress=False)

    module, cols = _columns(name, model, kind)
    batch = pairs.batch(list(range(6)))
    saved = []
    with torch.no_grad():
        handle = module.register_forward_hook(lambda m, a, out: saved.append(out.clone()))
        model(input_ids=batch.corrupted_ids, attention_mask=batch.attention_mask)
        handle.remove()

        def swap(m, a, out):
            out = out.clone()
            out[..., cols] = saved[0][..., cols]
            return out

        handle = module.register_forward_hook(swap)
        logits = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
        handle.remove()
    ex, pos, tok = batch.answer_index()
    logp = torch.log_softmax(logits, -1)[ex, pos, tok]
    expected = torch.zeros(6).index_add_(0, ex, logp) / batch.answer_len
    assert not torch.allclose(result.circuit, result.clean, atol=1e-4)  # the patch matters
    assert torch.allclose(result.circuit, expected, atol=1e-5)


def test_faithfulness_formulas_by_hand():
    t = lambda *v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    result = EvalResult(
        metric="logit_diff",
        clean=t(2.0, 4.0),
        corrupted=t(0.0, 0.0),
        circuit=t(1.0, 2.0),
        model_correct=torch.tensor([True, True]),
        circuit_correct=torch.tensor([True, False]),
        kl_corr_clean=t(1.0, 3.0),
        kl_corr_circ=t(0.5, 0.5),
        n_edges=5,
    )
    f = faithfulness(result)
    assert f["faithfulness"] == pytest.approx(0.5) and "kl_recovered_pct" not in f  # logit_diff: no KL %
    result.metric = "kl"
    assert faithfulness(result)["kl_recovered_pct"] == pytest.approx(100 * (1 - abs(2.0 - 0.5) / 2.0))
    assert (f["clean_metric"], f["corrupted_metric"], f["circuit_metric"]) == (3.0, 0.0, 1.5)
    assert (f["model_accuracy"], f["circuit_accuracy"]) == (1.0, 0.5)
    same = EvalResult(
        "kl", t(0.0), t(0.0), t(0.0), torch.tensor([True]), torch.tensor([True]), t(0.0), t(0.0), 0
    )
    assert math.isnan(faithfulness(same)["faithfulness"])


def test_bad_metric_and_mismatched_graph(tiny):
    loaded = tiny("tiny-gpt2")
    pairs = tokenize_pairs(digit_rows(2, two_token_answers=True), loaded.tokenizer, "add")
    with pytest.raises(ConfigError, match="valid metrics: kl, logit_diff, prob_diff, logprob"):
        evaluate(loaded.model, Graph.from_model(loaded.model).full(), pairs, metric="acc", progress=False)
    other = tiny("tiny-neox").model
    with pytest.raises(ConfigError, match="does not match"):
        evaluate(loaded.model, Graph.from_model(other).full(), pairs, progress=False)
