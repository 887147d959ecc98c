"""to_bridge: a TransformerBridge over a merged copy gives the peft model's logits and exposes EAP's hooks.

These tests also pin down what the hooks hold (residual decomposition, pre-LN inputs, b_O excluded): the
bridge is the TransformerLens reference that circuitft's own EAP engine is cross-checked against.
"""

from __future__ import annotations

import copy
import time

import pytest
import torch
from model_helpers import LORA_TARGETS, add_lora, random_ids

from circuitft.models import load_model
from circuitft.models.bridge import BridgeHooks, bridge_hooks, to_bridge

SPECS = ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-neox"]


@pytest.mark.parametrize("spec", SPECS)
def test_bridge_logits_equal_peft_logits(lora_tiny, spec):
    loaded, peft_model = lora_tiny(spec)
    ids = random_ids(len(loaded.tokenizer))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding in one row
    with torch.no_grad():
        expected = peft_model(ids, attention_mask=mask).logits
        with peft_model.disable_adapter():
            without_lora = peft_model(ids, attention_mask=mask).logits
    bridge = to_bridge(peft_model, loaded.tokenizer, loaded.tokenizer_dir)
    assert bridge.cfg.use_attn_result and bridge.cfg.use_split_qkv_input and bridge.cfg.use_hook_mlp_in
    with torch.no_grad():
        got = bridge(ids, attention_mask=mask)
    keep = mask.bool()
    assert (expected - without_lora)[keep].abs().max() > 0.05  # the adapter changes the logits
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)


def test_training_model_unchanged_by_to_bridge(lora_tiny):
    loaded, peft_model = lora_tiny("tiny-gpt2")  # GPT-2: TL rewrites its parameter storage when booting
    peft_model.train()
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    ids = random_ids(len(loaded.tokenizer))

    start = time.perf_counter()
    bridge = to_bridge(peft_model, loaded.tokenizer, loaded.tokenizer_dir)
    elapsed = time.perf_counter() - start
    # A backward through the bridge (after which a booted model can no longer be deep-copied).
    out = bridge.run_with_hooks(
        ids, fwd_hooks=[("hook_embed", lambda x, hook: x.detach().requires_grad_(True))]
    )
    out[:, -1].sum().backward()

    after = peft_model.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [n for n, p in peft_model.named_parameters() if p.requires_grad] == trainable
    assert peft_model.training
    assert not bridge.training and not any(p.requires_grad for p in bridge.parameters())
    assert not {p.data_ptr() for p in peft_model.parameters()} & {p.data_ptr() for p in bridge.parameters()}
    # Still trainable: a step moves the LoRA weights, and deepcopy (which a booted model breaks) works.
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model(ids, labels=ids).loss.backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in peft_model.state_dict().items() if "lora_" in k)
    copy.deepcopy(peft_model)
    # Training after booting does not leak into the bridge (it holds its own merged weights).
    with torch.no_grad():
        torch.testing.assert_close(bridge(ids), out.detach(), atol=0, rtol=0)
    assert elapsed < 5


@pytest.mark.parametrize("spec", SPECS)
def test_hooks_exist_with_expected_shapes(tiny, spec):
    loaded = tiny(spec)
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    hooks = bridge_hooks(bridge)
    cfg = loaded.model.config
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    assert (hooks.n_layers, hooks.n_heads, hooks.n_kv_heads) == (2, 4, n_kv)
    assert hooks.parallel_attn_mlp == (spec == "tiny-neox")
    b, p, H, G, d = 2, 7, hooks.n_heads, hooks.n_kv_heads, hooks.d_model
    expected = {hooks.input: (b, p, d), hooks.logits: (b, p, d)}
    for layer in range(hooks.n_layers):
        expected[hooks.attn_result(layer)] = (b, p, H, d)
        expected[hooks.qkv_input(layer, "q")] = (b, p, H, d)
        expected[hooks.qkv_input(layer, "k")] = (b, p, G, d)
        expected[hooks.qkv_input(layer, "v")] = (b, p, G, d)
        expected[hooks.mlp_in(layer)] = (b, p, d)
        expected[hooks.mlp_out(layer)] = (b, p, d)
    assert set(hooks.sources()) | set(hooks.destinations()) == set(expected)

    seen: dict[str, tuple[int, ...]] = {}

    def record(x, hook):
        seen[hook.name] = tuple(x.shape)  # hook.name: the canonical name, as BridgeHooks gives

    with torch.no_grad():
        bridge.run_with_hooks(
            random_ids(len(loaded.tokenizer), b, p), fwd_hooks=[(n, record) for n in expected]
        )
    assert seen == expected
    if spec in ("tiny-llama", "tiny-qwen2"):  # GQA: key/value inputs come per key/value group
        assert expected[hooks.qkv_input(0, "k")] == (b, p, 2, d)


@pytest.mark.parametrize("spec", SPECS)
def test_hook_contents_decompose_the_residual_stream(tiny, spec):
    """Destinations are sums of sources: what EAP's edge scores rely on."""
    loaded = tiny(spec)  # tiny models have random biases and norm gains, so b_O is non-zero where it exists
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    hooks = bridge_hooks(bridge)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(random_ids(len(loaded.tokenizer)))
    total = cache[hooks.input] + (cache["hook_pos_embed"] if spec == "tiny-gpt2" else 0)
    for layer in range(hooks.n_layers):
        resid_pre = cache[f"blocks.{layer}.hook_resid_pre"]
        torch.testing.assert_close(resid_pre, total, atol=1e-5, rtol=0)
        for which in ("q", "k", "v"):  # pre-LN residual, one copy per head / key-value group
            x = cache[hooks.qkv_input(layer, which)]
            torch.testing.assert_close(x, resid_pre[:, :, None].expand_as(x), atol=0, rtol=0)
        heads = cache[hooks.attn_result(layer)].sum(2)
        b_o = cache[f"blocks.{layer}.hook_attn_out"] - heads  # hook_result excludes the output bias
        torch.testing.assert_close(b_o, b_o[:1, :1].expand_as(b_o), atol=1e-5, rtol=0)
        if spec in ("tiny-gpt2", "tiny-neox"):
            assert b_o.abs().max() > 1e-3
        mlp_input = resid_pre if hooks.parallel_attn_mlp else resid_pre + heads + b_o
        torch.testing.assert_close(cache[hooks.mlp_in(layer)], mlp_input, atol=1e-5, rtol=0)
        total = total + heads + b_o + cache[hooks.mlp_out(layer)]
    torch.testing.assert_close(cache[hooks.logits], total, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_hooks_are_intervention_points_with_gradients(tiny, spec):
    loaded = tiny(spec)
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    hooks = bridge_hooks(bridge)
    ids = random_ids(len(loaded.tokenizer), batch=2, length=6)
    with torch.no_grad():
        clean = bridge(ids)

    delta = torch.randn(
        hooks.d_model, generator=torch.Generator().manual_seed(1)
    )  # not constant: LN removes that

    def bump(index):
        def hook(x, hook):
            x = x.clone()
            x[index] += delta
            return x

        return hook

    # Editing one key/value group, one query head or one MLP input changes the logits.
    for name, index in [
        (hooks.qkv_input(1, "k"), (slice(None), slice(None), 1)),
        (hooks.qkv_input(0, "v"), (slice(None), slice(None), 0)),
        (hooks.qkv_input(1, "q"), (slice(None), -1, 3)),
        (hooks.mlp_in(0), (slice(None),)),
    ]:
        with torch.no_grad():
            edited = bridge.run_with_hooks(ids, fwd_hooks=[(name, bump(index))])
        assert (edited - clean).abs().max() > 1e-4, name

    # With frozen weights, backward hooks fire once an activation requires grad.
    grads: dict[str, tuple[int, ...]] = {}

    def needs_grad(x, hook):
        return x.detach().requires_grad_(True)

    def record(g, hook):
        grads[hook.name] = tuple(g.shape)

    bridge.add_hook(hooks.input, needs_grad)
    for name in hooks.destinations():
        bridge.add_hook(name, record, dir="bwd")
    try:
        bridge(ids)[:, -1].sum().backward()
    finally:
        bridge.reset_hooks()
    assert set(grads) == set(hooks.destinations())
    assert grads[hooks.qkv_input(0, "k")][2] == hooks.n_kv_heads
    assert all(p.grad is None for p in bridge.parameters())


def test_tokenizer_without_folder_is_saved_and_keeps_pad(tiny, monkeypatch, tmp_path):
    loaded = tiny("tiny-llama")
    tok = loaded.tokenizer
    tok.pad_token = tok.eos_token  # an in-memory change the saved folder does not know about
    monkeypatch.setenv("CIRCUITFT_CACHE", str(tmp_path))
    bridge = to_bridge(loaded.model, tok)  # no tokenizer_dir
    saved = list((tmp_path / "tokenizers").glob("saved-*"))
    assert len(saved) == 1 and (saved[0] / "tokenizer_config.json").is_file()
    assert bridge.tokenizer.pad_token == tok.eos_token
    assert bridge.tokenizer("1 2 3").input_ids == tok("1 2 3").input_ids
    to_bridge(loaded.model, tok)  # same tokenizer -> same folder, reused
    assert list((tmp_path / "tokenizers").glob("saved-*")) == saved


def test_checkpoint_folder_tokenizer_keeps_its_ids(tmp_path):
    """A tiny-qwen2 checkpoint folder (config.json beside the tokenizer): ids survive every reload."""
    original = load_model("tiny-qwen2")
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    text = "Mary went to the shop 17"
    assert (
        bridge.tokenizer(text).input_ids
        == loaded.tokenizer(text).input_ids
        == original.tokenizer(text).input_ids
    )


def test_model_name_is_not_remapped_by_tl_aliases(tiny):
    loaded = tiny("tiny-neox")  # "neox" alone would be silently remapped to EleutherAI/gpt-neox-20b
    bridge = to_bridge(loaded.model, loaded.tokenizer, loaded.tokenizer_dir)
    assert bridge.cfg.model_name == "local/gpt_neox"
    assert bridge.cfg.d_model == 32


def test_bridge_hooks_refuses_bridge_without_eap_flags(tiny):
    from transformer_lens.model_bridge import TransformerBridge

    from circuitft.models.merge import merged_copy

    loaded = tiny("tiny-gpt2")
    plain = TransformerBridge.boot_transformers(
        "local/gpt2", hf_model=merged_copy(loaded.model), tokenizer=loaded.tokenizer, device="cpu"
    )
    with pytest.raises(RuntimeError, match="flags"):
        bridge_hooks(plain)


def test_hook_name_lists():
    hooks = BridgeHooks(n_layers=2, n_heads=4, n_kv_heads=2, d_model=32, parallel_attn_mlp=False)
    assert hooks.sources() == [
        "embed.hook_out",
        "blocks.0.attn.hook_result",
        "blocks.0.mlp.hook_out",
        "blocks.1.attn.hook_result",
        "blocks.1.mlp.hook_out",
    ]
    assert hooks.destinations()[:4] == [
        "blocks.0.attn.hook_q_input",
        "blocks.0.attn.hook_k_input",
        "blocks.0.attn.hook_v_input",
        "blocks.0.hook_mlp_in",
    ]
    assert hooks.destinations()[-1] == hooks.logits == "blocks.1.hook_out"


@pytest.mark.slow
def test_embedded_model_bridge_with_lora(default_cache):
    """SmolLM2-135M (GQA 9 heads / 3 groups) with a non-zero adapter: bridge logits == peft logits."""
    loaded = load_model("smollm2-135m")
    peft_model = add_lora(loaded.model, LORA_TARGETS["tiny-llama"], r=8)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.02)  # keep a 135M model's logits sane
    ids = torch.tensor([loaded.tokenizer("Solve: 3 + 4 =").input_ids])
    with torch.no_grad():
        expected = peft_model(ids).logits
    bridge = to_bridge(peft_model, loaded.tokenizer, loaded.tokenizer_dir)
    hooks = bridge_hooks(bridge)
    assert (hooks.n_layers, hooks.n_heads, hooks.n_kv_heads, hooks.d_model) == (30, 9, 3, 576)
    with torch.no_grad():
        got = bridge(ids)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bridge_on_cuda(lora_tiny):
    loaded, peft_model = lora_tiny("tiny-llama")
    ids = random_ids(len(loaded.tokenizer))
    with torch.no_grad():
        expected = peft_model(ids).logits
    bridge = to_bridge(peft_model, loaded.tokenizer, loaded.tokenizer_dir, device="cuda")
    assert next(bridge.parameters()).device.type == "cuda"
    assert next(peft_model.parameters()).device.type == "cpu"  # the training model stays where it was
    with torch.no_grad():
        got = bridge(ids.cuda()).cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
