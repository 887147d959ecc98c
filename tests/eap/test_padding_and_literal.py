"""Attribution on right-padded rows with multi-token answers, EAP-IG-activations with m > 1 against a
literal computation, and the direction of every KL in evaluation (a swapped argument order fails here).

The literal computations use only the Hugging Face model, plain autograd and the definitions written in
:mod:`circuitft.eap.attribute` and :mod:`circuitft.eap.metrics`, none of circuitft's hooks.
"""

from __future__ import annotations

import random

import pytest
import torch

from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.eap.attribute import attribute
from circuitft.eap.evaluate import evaluate
from circuitft.eap.graph import Graph


def mixed_rows(n: int = 6, seed: int = 0) -> list[PromptRow]:
    """Prompts of 4, 6 and 8 tokens (so rows are right-padded in a batch); answers of 1 to 3 tokens."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        terms = [rng.randint(1, 9) for _ in range(2 + i % 3)]
        bad = [*terms[:-1], rng.choice([d for d in range(1, 10) if d != terms[-1]])]
        total = sum(terms) % 10
        answer = " ".join(str((total + j) % 10) for j in range(1 + i % 3))
        rows.append(PromptRow(" + ".join(map(str, terms)) + " =", " + ".join(map(str, bad)) + " =", answer))
    return rows


@pytest.fixture(params=[1.0], ids=["plain"])
def gpt2(tiny, request):
    loaded = tiny("tiny-gpt2")
    with torch.no_grad():  # 0.5: a smoother model (as the other engine tests), second-order terms small
        for p in loaded.model.parameters():
            if p.dim() >= 2:
                p.mul_(request.param)
    pairs = tokenize_pairs(mixed_rows(), loaded.tokenizer, "mixed")
    assert len(set(pairs.attention_mask.sum(1).tolist())) >= 3  # really padded
    assert pairs.answer_len.max() > 1
    return loaded.model, pairs


def scores(model, pairs, method, **kw) -> torch.Tensor:
    g = attribute(model, Graph.from_model(model), pairs, method=method, progress=False, **kw)
    return g.scores


@pytest.mark.parametrize(
    ("method", "metric"),
    [("EAP-IG-inputs", "kl"), ("EAP-IG-activations", "kl"), ("EAP", "logprob"), ("exact", "kl")],
)
def test_padded_batches_equal_row_by_row(gpt2, method, metric):
    """A batch of rows of different lengths scores exactly as the rows one at a time (no padding)."""
    model, pairs = gpt2
    together = scores(model, pairs, method, metric=metric, ig_steps=3, batch_size=len(pairs))
    alone = scores(model, pairs, method, metric=metric, ig_steps=3, batch_size=1)
    assert together.abs().max() > 0
    assert torch.allclose(together, alone, atol=1e-4 * together.abs().max()), (together - alone).abs().max()


@pytest.mark.parametrize("gpt2", [0.5], ids=["smooth"], indirect=True)
def test_ig_tracks_exact_patching_on_padded_multi_token_rows(gpt2):
    """Measured (seed 0, 6 rows, m = 5, matrices x0.5): Pearson 0.960 against exact patching over all
    edges (EAP-IG-activations: 0.897)."""
    model, pairs = gpt2
    mask = Graph.from_model(model).cfg.real_edge_mask
    exact = scores(model, pairs, "exact", batch_size=len(pairs))[mask].double()
    ig = scores(model, pairs, "EAP-IG-inputs", ig_steps=5, batch_size=4)[mask].double()
    r = torch.corrcoef(torch.stack([ig, exact]))[0, 1].item()
    assert r >= 0.93, r


# ---- literal computations ------------------------------------------------------------------------------
def answer_positions(pairs: PromptPairs, i: int) -> tuple[list[int], list[int]]:
    p, a = int(pairs.prompt_len[i]), int(pairs.answer_len[i])
    return [p - 1 + j for j in range(a)], pairs.answer_ids[i, :a].tolist()


def literal_kl(ref_logits: torch.Tensor, run_logits: torch.Tensor, pairs: PromptPairs) -> torch.Tensor:
    """[N] mean over each row's answer positions of sum_v P_ref(v) (log P_ref(v) - log P_run(v))."""
    out = []
    for i in range(len(pairs)):
        pos, _ = answer_positions(pairs, i)
        lr = torch.log_softmax(ref_logits[i, pos].double(), -1)
        lu = torch.log_softmax(run_logits[i, pos].double(), -1)
        out.append((lr.exp() * (lr - lu)).sum(-1).mean())
    return torch.stack(out)


def test_ig_activations_with_several_steps_equals_a_literal_computation(gpt2):
    """Edges MLP -> logits of EAP-IG-activations, m = 3, KL, padded multi-token rows, by hand:

    passes: inputs a*e + (1-a)*e' for a = k/m, k = 1..m, then for each sublayer S (attn, mlp of every
    layer) and k = 1..m the clean run with S's output set to a*z_S(clean) + (1-a)*z_S(corrupted);
    score(m_l -> logits) = mean over rows of sum_{t,d} (z_ml(corrupted) - z_ml(clean)) * (mean over
    passes of dLoss/d resid_final). (input -> logits is 0: the corrupted token is not at an answer
    position.)"""
    model, pairs = gpt2
    m = 3
    got = scores(model, pairs, "EAP-IG-activations", metric="kl", ig_steps=m, batch_size=len(pairs))
    cfg = Graph.from_model(model).cfg
    batch = pairs.batch(slice(None))
    mask = batch.attention_mask
    wte = model.transformer.wte
    blocks = [mod for layer in model.transformer.h for mod in (layer.attn, layer.mlp)]
    with torch.no_grad():
        e, e_corr = wte(batch.clean_ids), wte(batch.corrupted_ids)
        clean_logits = model(input_ids=batch.clean_ids, attention_mask=mask).logits
        outs = {}
        for name, ids in (("clean", batch.clean_ids), ("corr", batch.corrupted_ids)):
            rec: list[torch.Tensor] = []
            hs = [
                b.register_forward_hook(
                    lambda mod, a, o, rec=rec: rec.append(o[0] if isinstance(o, tuple) else o)
                )
                for b in blocks
            ]
            model(input_ids=ids, attention_mask=mask)
            for h in hs:
                h.remove()
            outs[name] = rec

    def grad_at_final_resid(embeds: torch.Tensor, replace: tuple[int, torch.Tensor] | None) -> torch.Tensor:
        store = {}

        def grab(mod, args):
            args[0].retain_grad()
            store["x"] = args[0]

        hooks = [model.transformer.ln_f.register_forward_pre_hook(grab)]
        if replace is not None:
            i, value = replace
            hooks.append(
                blocks[i].register_forward_hook(
                    lambda mod, a, o: (value, *o[1:]) if isinstance(o, tuple) else value
                )
            )
        with torch.enable_grad():
            logits = model(inputs_embeds=embeds.detach().requires_grad_(True), attention_mask=mask).logits
            literal_kl(clean_logits, logits, pairs).sum().backward()
        for h in hooks:
            h.remove()
        return store["x"].grad.double()

    for p in model.parameters():
        p.requires_grad_(False)
    total, passes = torch.zeros_like(e, dtype=torch.float64), 0
    for k in range(1, m + 1):
        a = k / m
        total += grad_at_final_resid(a * e + (1 - a) * e_corr, None)
        passes += 1
    for i in range(len(blocks)):
        for k in range(1, m + 1):
            a = k / m
            value = (a * outs["clean"][i] + (1 - a) * outs["corr"][i]).requires_grad_(True)
            total += grad_at_final_resid(e, (i, value))
            passes += 1
    grad = total / passes
    for layer in range(len(model.transformer.h)):
        z = 2 * layer + 1  # the layer's MLP among the recorded sublayers
        expected = ((outs["corr"][z] - outs["clean"][z]).double() * grad).sum() / len(pairs)
        value = got[cfg.forward_names.index(f"m{layer}"), cfg.logits_index].double()
        assert expected.abs() > 1e-5
        assert value.item() == pytest.approx(expected.item(), rel=1e-4), (layer, value, expected)


def test_kl_directions_in_evaluation_are_pinned(gpt2):
    """``corrupted`` (kl metric) is KL(P_clean || P_corrupted) and ``kl_corr_clean`` is
    KL(P_corrupted || P_clean), per row over its answer positions; the swapped orders differ."""
    model, pairs = gpt2
    graph = Graph.from_model(model)  # empty circuit: the circuit run is the corrupted run
    res = evaluate(model, graph, pairs, metric="kl", batch_size=4, progress=False)
    batch = pairs.batch(slice(None))
    with torch.no_grad():
        clean = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
        corr = model(input_ids=batch.corrupted_ids, attention_mask=batch.attention_mask).logits
    kl_clean_corr, kl_corr_clean = literal_kl(clean, corr, pairs), literal_kl(corr, clean, pairs)
    assert (kl_clean_corr - kl_corr_clean).abs().max() > 1e-3  # the two directions really differ here
    assert torch.allclose(res.corrupted.double(), kl_clean_corr, atol=1e-5)
    assert torch.allclose(res.circuit.double(), kl_clean_corr, atol=1e-4)
    assert torch.allclose(res.kl_corr_clean.double(), kl_corr_clean, atol=1e-5)
    assert not torch.allclose(res.kl_corr_clean.double(), kl_clean_corr, atol=1e-5)
    assert not torch.allclose(res.corrupted.double(), kl_corr_clean, atol=1e-5)
