"""Site maps: layout of q/k/v chunks, source capture, and destination gradients against brute-force autograd."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

import circuitft.eap.sites as sites_module
from circuitft.eap.forward import analysis_mode
from circuitft.eap.gradients import GradCollector, norm_backward, norm_stats
from circuitft.eap.graph import Graph
from circuitft.eap.patching import capture_sources, head_outputs, hooked
from circuitft.eap.sites import model_sites
from circuitft.errors import ConfigError
from circuitft.models.tiny import tiny_specs

ARCHS = tiny_specs()[:-1]  # every family (not the benchmark-sized model)


def _ids(seed: int = 0, b: int = 2, t: int = 6, vocab: int = 60) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (b, t), generator=g)


def test_unsupported_architecture_is_one_line_config_error():
    fake = torch.nn.Linear(2, 2)
    fake.config = SimpleNamespace(model_type="t5", architectures=["T5ForConditionalGeneration"])
    with pytest.raises(ConfigError) as err:
        model_sites(fake)
    assert "t5" in str(err.value) and "llama" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ARCHS)
def test_site_shapes_match_graph_config(tiny, name):
    model = tiny(name).model
    sites = model_sites(model)
    cfg = Graph.from_model(model).cfg
    assert (sites.n_layers, sites.n_heads, sites.n_kv_heads) == (cfg.n_layers, cfg.n_heads, cfg.groups)
    assert sites.parallel_attn_mlp == cfg.parallel_attn_mlp == (name in ("tiny-neox", "tiny-gptj"))
    for ls in sites.layers:
        slots = torch.cat([p.slots for p in ls.projections])
        assert sorted(slots.tolist()) == list(range(sites.attn_slots))


@pytest.mark.parametrize("name", ARCHS)
def test_projection_chunks_follow_the_models_qkv_layout(tiny, name):
    """Perturb one output chunk at one position and watch which heads/positions of z change.

    q of head h: only head h, only that position (nothing at position 0: a single key gets all the
    attention). k of group g: heads of group g at positions >= 1 only. v: those heads from that position on.
    Positions stop at the sliding window (Gemma); a q/k norm over all heads (OLMo 2) spreads q/k to all heads.
    """
    model = tiny(name).model
    sites = model_sites(model)
    h, g, dh = sites.n_heads, sites.n_kv_heads, sites.head_dim
    ls = sites.layers[0]
    window = getattr(ls.attn, "sliding_window", None) or 100
    q_norm = getattr(ls.attn, "q_norm", None)
    mixed = q_norm is not None and q_norm.weight.numel() > dh
    ids = _ids(t=4)
    z: list[torch.Tensor] = []
    hook_z = ls.out_proj.register_forward_pre_hook(lambda m, a: z.append(a[0].detach().clone()))
    with torch.no_grad(), hooked([hook_z]):
        model(input_ids=ids)
        base = z.pop()
        for proj in ls.projections:
            for j, slot in enumerate(proj.slots.tolist()):
                kind, idx = (
                    ("q", slot) if slot < h else ("k", slot - h) if slot < h + g else ("v", slot - h - g)
                )
                heads = {idx} if kind == "q" else set(range(idx * h // g, (idx + 1) * h // g))
                if mixed and kind != "v":
                    heads = set(range(h))
                for pos in (0, 1):

                    def bump(m, a, out, j=j, pos=pos):
                        out = out.clone()
                        out.view(*out.shape[:2], -1, dh)[:, pos, j] += 3.0
                        return out

                    with hooked([proj.module.register_forward_hook(bump)]):
                        model(input_ids=ids)
                    diff = (z.pop() - base).abs().reshape(*base.shape[:2], h, dh).amax(dim=(0, 3)) > 1e-6
                    changed = {(p, hh) for p, hh in diff.nonzero().tolist()}
                    if kind == "q":
                        expect = set() if pos == 0 else {(1, hh) for hh in heads}
                    elif kind == "k":  # never position 0
                        expect = {(p, hh) for p in range(max(pos, 1), min(4, pos + window)) for hh in heads}
                    else:
                        expect = {(p, hh) for p in range(pos, min(4, pos + window)) for hh in heads}
                    assert changed == expect, (name, kind, idx, pos)


@pytest.mark.parametrize("name", ARCHS)
def test_sources_sum_to_the_final_norm_input(tiny, name):
    """Sum of all sources + position embeddings + attention output biases == residual before the final norm."""
    model = tiny(name).model
    with torch.no_grad():  # non-zero biases so that the bookkeeping is visible
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.5)
    sites = model_sites(model)
    cfg = Graph.from_model(model).cfg
    ids = _ids()
    delta = torch.zeros(cfg.n_forward, *ids.shape, sites.d_model)
    resid: list[torch.Tensor] = []
    handles = capture_sources(sites, cfg, delta, "set")
    handles.append(sites.final_norm.register_forward_pre_hook(lambda m, a: resid.append(a[0].detach())))
    with torch.no_grad(), hooked(handles):
        model(input_ids=ids)
    total = delta.sum(0)
    for ls in sites.layers:
        if ls.out_proj.bias is not None:
            total = total + ls.out_proj.bias
    if name == "tiny-gpt2":
        total = total + model.transformer.wpe(torch.arange(ids.shape[1]))
    assert torch.allclose(total, resid[0], atol=1e-5)
    # each head's write equals its slice of the output projection
    z = torch.randn(2, 3, sites.n_heads * sites.head_dim)
    ls = sites.layers[0]
    bias = 0 if ls.out_proj.bias is None else ls.out_proj.bias
    assert torch.allclose(head_outputs(z, ls.out_weight).sum(0) + bias, ls.out_proj(z), atol=1e-5)


@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_norm_backward_matches_autograd(kind):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(8, dtype=torch.float64)
    u = torch.randn(5, 2, 3, 8, dtype=torch.float64)  # five cotangents at once
    if kind == "rms":
        y = gamma * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    else:
        y = torch.nn.functional.layer_norm(x, (8,), gamma, None, 1e-5)
    r, n = norm_stats(x.detach(), kind, 1e-6 if kind == "rms" else 1e-5)
    mine = norm_backward(u, r, n, gamma, kind)
    for i in range(5):
        (ref,) = torch.autograd.grad(y, x, u[i], retain_graph=True)
        assert torch.allclose(mine[i], ref, atol=1e-10)


def _reference_destination_grads(model, sites, cfg, embeds, loss_fn) -> torch.Tensor:
    """Brute force: every destination input is an explicit copy x + z_v of the residual (z_v a zero leaf)."""
    b, t, d = embeds.shape
    leaves = torch.zeros(cfg.n_backward, b, t, d, dtype=embeds.dtype, requires_grad=True)
    saved: dict[int, torch.Tensor] = {}
    handles = []
    for layer, ls in enumerate(sites.layers):
        base = layer * cfg.layer_width

        def save(m, a, layer=layer):
            saved[layer] = a[0]

        def per_dest(m, a, out, layer=layer, ls=ls, base=base):
            proj = next(p for p in ls.projections if p.module is m)
            chunks = []
            for j, slot in enumerate(proj.slots.tolist()):
                x_v = saved[layer] + leaves[base + slot]
                normed = x_v if sites.norm_kind == "none" else ls.attn_norm.forward(x_v)
                full = m.forward(normed)
                chunks.append(full.view(b, t, -1, sites.head_dim)[:, :, j])
            return torch.stack(chunks, 2).reshape(b, t, -1)

        def add_leaf(m, a, col=cfg.mlp_in_index(layer), layer=layer, ls=ls):
            if ls.mlp_shared_norm is not None:  # GPT-J: the MLP reads ln_1(residual), shared with attention
                return (ls.mlp_shared_norm.forward(saved[layer] + leaves[col]),)
            return (a[0] + leaves[col],)

        handles.append(ls.attn_norm.register_forward_pre_hook(save))
        handles += [p.module.register_forward_hook(per_dest) for p in ls.projections]
        handles.append(ls.mlp_norm.register_forward_pre_hook(add_leaf))
    handles.append(
        sites.final_norm.register_forward_pre_hook(lambda m, a: (a[0] + leaves[cfg.logits_index],))
    )
    with hooked(handles):
        loss = loss_fn(model(inputs_embeds=embeds.requires_grad_(True)).logits)
        (grads,) = torch.autograd.grad(loss, leaves)
    return grads


@pytest.mark.parametrize("name", ARCHS)
def test_destination_grads_equal_autograd_through_per_head_copies(tiny, name):
    model = tiny(name).model.double()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)  # a less uniform model: larger, more varied gradients
    sites = model_sites(model)
    cfg = Graph.from_model(model).cfg
    ids = _ids(1)
    weights = torch.randn(*ids.shape, model.config.vocab_size, dtype=torch.float64)
    loss_fn = lambda logits: (torch.log_softmax(logits, -1) * weights).sum()  # noqa: E731
    with analysis_mode(model):
        embeds = sites.embed(ids).detach()
        ref = _reference_destination_grads(model, sites, cfg, embeds.clone(), loss_fn)
        acc = torch.zeros_like(ref)
        collector = GradCollector(sites, cfg, acc)
        with hooked(collector.hooks()):
            loss_fn(model(inputs_embeds=embeds.clone().requires_grad_(True)).logits).backward()
        collector.finish()
    assert ref.abs().amax() > 1e-3
    # Llama-style RMSNorm normalises in float32 even in a float64 model, hence the looser tolerance there
    tol = 1e-9 if sites.norm_kind == "layer" else 1e-5
    for v in range(cfg.n_backward):
        err = float((acc[v] - ref[v]).abs().amax())
        assert err <= tol * float(ref.abs().amax()), (cfg.backward_names[v], err)


def test_table_path_missing_from_the_model_is_one_line_naming_it(tiny, monkeypatch):
    from dataclasses import replace

    from circuitft.models import architectures

    model = tiny("tiny-qwen3").model
    bad = replace(architectures.ARCHITECTURES["qwen3"], out_proj="dense")
    monkeypatch.setitem(architectures.ARCHITECTURES, "qwen3", bad)
    with pytest.raises(ConfigError) as err:
        model_sites(model)
    msg = str(err.value)
    assert "model.layers.0.self_attn.dense" in msg and "qwen3" in msg and "\n" not in msg


def test_unsupported_model_type_has_no_graph_either():
    from circuitft.eap.graph import GraphConfig

    config = SimpleNamespace(model_type="bloom", architectures=["BloomForCausalLM"], n_layer=2, n_head=4)
    with pytest.raises(ConfigError, match="'bloom'.*supported: .*qwen3"):
        GraphConfig.from_hf_config(config)


@pytest.mark.parametrize("name", ["tiny-gemma2", "tiny-olmo2"])
def test_post_norm_head_writes_its_share_with_its_own_runs_scale(tiny, name):
    """Behind a post-attention RMSNorm, head h writes gain * (z_h W_h) / rms(attention output of its run).

    Corrupting node a0.h1 (all its outgoing edges) must equal, by hand: a clean run whose post-norm output in
    layer 0 gets + gain * (z1(corr) W_1 / rms_corr - z1(clean) W_1 / rms_clean), z and rms each from its run.
    The shares of one run add up to the norm's output (so full and empty circuits stay exact), but
    corrupting one head does not renormalise the others: rms is frozen per run.
    """
    from digits import digit_rows

    from circuitft.data.pairs import tokenize_pairs
    from circuitft.eap.evaluate import evaluate

    loaded = tiny(name)
    model = loaded.model
    sites = model_sites(model)
    ls = sites.layers[0]
    pairs = tokenize_pairs(digit_rows(6), loaded.tokenizer, "add")
    graph = Graph.from_model(model).full()
    graph.in_graph[graph.cfg.head_index(0, 1)] = False
    result = evaluate(model, graph, pairs, metric="logprob", batch_size=6, progress=False)

    batch = pairs.batch(list(range(6)))
    h, dh = sites.n_heads, sites.head_dim
    post = ls.post_attn_norm
    gain = ls.post_attn_gain

    def share(ids):
        seen = {}
        hooks = [
            ls.out_proj.register_forward_pre_hook(lambda m, a: seen.update(z=a[0].detach())),
            post.register_forward_pre_hook(lambda m, a: seen.update(a=a[0].detach())),
        ]
        with torch.no_grad(), hooked(hooks):
            model(input_ids=ids, attention_mask=batch.attention_mask)
        a = seen["a"]
        rms = a.pow(2).mean(-1, keepdim=True).add(ls.post_attn_eps).sqrt()
        z1 = seen["z"].reshape(*a.shape[:2], h, dh)[:, :, 1]
        return gain * (z1 @ ls.out_weight[1]) / rms

    shift = share(batch.corrupted_ids) - share(batch.clean_ids)
    assert shift.abs().max() > 1e-3
    with torch.no_grad(), hooked([post.register_forward_hook(lambda m, a, out: out + shift)]):
        logits = model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
    ex, pos, tok = batch.answer_index()
    logp = torch.log_softmax(logits, -1)[ex, pos, tok]
    by_hand = torch.zeros(6).index_add_(0, ex, logp) / batch.answer_len
    assert torch.allclose(result.circuit, by_hand, atol=1e-5)
    assert not torch.allclose(result.circuit, result.clean, atol=1e-3)


def test_output_bias_behind_a_post_norm_is_refused(tiny):
    """Its share would change between runs and belong to no node, so the sources would not add up."""
    model = tiny("tiny-olmo2").model
    model.model.layers[1].self_attn.o_proj.bias = torch.nn.Parameter(torch.zeros(32))
    with pytest.raises(ConfigError, match=r"model\.layers\.1\.self_attn: an output bias") as err:
        model_sites(model)
    assert "\n" not in str(err.value)


class _ScaleNorm(torch.nn.Module):
    """A norm that is neither kind: gain * x / mean|x| (it has a weight and an eps, like an RMSNorm)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x / (x.abs().mean(-1, keepdim=True) + self.eps)


def test_norm_kind_comes_from_the_architecture_table(tiny):
    """The engine's norm kind is ArchSpec.norm (not a guess from the module's attributes)."""
    assert model_sites(tiny("tiny-gpt2").model).norm_kind == "layer"
    assert model_sites(tiny("tiny-llama").model).norm_kind == "rms"
    assert model_sites(tiny("tiny-gemma2").model).norm_kind == "rms"  # rms_offset: (1 + weight)
    assert model_sites(tiny("tiny-olmo2").model).norm_kind == "none"


def test_a_norm_that_is_neither_kind_is_refused(tiny):
    """A family whose norm is neither RMSNorm nor LayerNorm must not get silently wrong gradients."""
    model = tiny("tiny-llama").model
    layer = model.model.layers[1]
    layer.input_layernorm = _ScaleNorm(layer.input_layernorm.weight.shape[0])
    with pytest.raises(ConfigError) as err:
        model_sites(model)
    msg = str(err.value)
    assert "layers.1.input_layernorm" in msg and "_ScaleNorm" in msg and "ArchSpec.norm" in msg
    assert "\n" not in msg


def test_a_table_entry_that_declares_the_wrong_kind_is_refused(tiny, monkeypatch):
    real = sites_module.arch_spec
    monkeypatch.setattr(sites_module, "arch_spec", lambda cfg: dataclasses.replace(real(cfg), norm="layer"))
    with pytest.raises(ConfigError, match="does not compute the layer norm"):
        model_sites(tiny("tiny-llama").model)
