"""The engine against an independent EAP written on TransformerLens 4's TransformerBridge hooks.

The engine hooks the plain Hugging Face modules (fast attention kept, per-head input gradients derived from
projection gradients). Here the same EAP scores are computed the slow, literal way on the bridge: per-head
``hook_result`` sources, per-head / per-group ``hook_{q,k,v}_input`` destinations, ``hook_mlp_in`` and the last
``hook_resid_post``, gradients read straight from those hooks. The two must agree edge for edge.
"""

from __future__ import annotations

import pytest
import torch
from digits import digit_rows

from circuitft.data.pairs import tokenize_pairs
from circuitft.eap.attribute import attribute
from circuitft.eap.graph import Graph
from circuitft.models.bridge import bridge_hooks, to_bridge
from circuitft.models.merge import merged_copy


def bridge_eap_logprob(bridge, graph: Graph, clean: torch.Tensor, corrupted: torch.Tensor, pos, tok):
    """EAP scores (metric: mean log-prob of the answer) from bridge hooks, by brute force."""
    cfg, h = graph.cfg, bridge_hooks(bridge)
    names = {h.input: [0]}
    for layer in range(cfg.n_layers):
        names[h.attn_result(layer)] = list(
            range(cfg.head_index(layer, 0), cfg.head_index(layer, 0) + cfg.n_heads)
        )
        names[h.mlp_out(layer)] = [cfg.mlp_index(layer)]

    def sources(ids: torch.Tensor) -> torch.Tensor:
        _, cache = bridge.run_with_cache(ids, names_filter=lambda n: n in names)
        z = torch.zeros(cfg.n_forward, *ids.shape, cfg.d_model)
        for name, idx in names.items():
            act = cache[name]
            z[idx] = act.permute(2, 0, 1, 3) if act.dim() == 4 else act[None]
        return z

    with torch.no_grad():
        delta = sources(corrupted) - sources(clean)
    acts: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        # A clone feeds only what reads the hook (TransformerLens 4's hook_mlp_in passes ln2's input through
        # unchanged, so the tensor itself also carries the residual skip's gradient; legacy TL cloned it).
        act = act.clone()
        act.retain_grad()
        acts[hook.name] = act
        return act

    def start(act, hook):  # parameters are frozen: let the gradient start at the token embeddings
        return act.detach().requires_grad_(True)

    dests = [h.qkv_input(layer, w) for layer in range(cfg.n_layers) for w in "qkv"]
    dests += [h.mlp_in(layer) for layer in range(cfg.n_layers)] + [h.logits]
    logits = bridge.run_with_hooks(clean, fwd_hooks=[(h.input, start)] + [(d, keep) for d in dests])
    logp = torch.log_softmax(logits[torch.arange(len(pos)), pos], -1)
    logp[torch.arange(len(pos)), tok].sum().backward()

    scores = torch.zeros(cfg.n_forward, cfg.n_backward)
    for layer in range(cfg.n_layers):
        prev = cfg.attn_prev(layer)
        for which, index in (("q", cfg.q_index), ("k", cfg.k_index), ("v", cfg.v_index)):
            grad = acts[h.qkv_input(layer, which)].grad  # [b, p, H or G, d]
            for j in range(grad.shape[2]):
                scores[:prev, index(layer, j)] = torch.einsum("nbpd,bpd->n", delta[:prev], grad[:, :, j])
        grad = acts[h.mlp_in(layer)].grad
        scores[: cfg.mlp_prev(layer), cfg.mlp_in_index(layer)] = torch.einsum(
            "nbpd,bpd->n", delta[: cfg.mlp_prev(layer)], grad
        )
    scores[:, cfg.logits_index] = torch.einsum("nbpd,bpd->n", delta, acts[h.logits].grad)
    return scores / len(pos)


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-qwen3", "tiny-phi3"])
def test_engine_equals_bridge_reference(tiny, spec: str) -> None:
    loaded = tiny(spec)
    model = merged_copy(loaded.model)
    pairs = tokenize_pairs(digit_rows(8), loaded.tokenizer, "digits")
    assert int(pairs.attention_mask.sum(1).min()) == pairs.clean_ids.shape[1], "no padding in this test"
    ours = attribute(model, Graph.from_model(model), pairs, method="EAP", metric="logprob", progress=False)
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    batch = pairs.batch(slice(None))
    _, pos, tok = batch.answer_index()
    ref = bridge_eap_logprob(bridge, ours, batch.clean_ids, batch.corrupted_ids, pos, tok)
    real = ours.cfg.real_edge_mask
    a, b = ours.scores[real], ref[real]
    assert b.abs().max() > 1e-3  # the reference is not trivially zero
    # The engine reports the change of the metric in loss sign (-logprob); the reference is d(logprob).
    torch.testing.assert_close(a, -b, atol=1e-5 + 1e-4 * float(b.abs().max()), rtol=1e-3)
