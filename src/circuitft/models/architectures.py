"""The table of supported architectures: one :class:`ArchSpec` per Hugging Face ``model_type``.

Everything that differs between model families lives here as data: where the modules are, how q/k/v are
laid out, which norms surround attention and the MLP, whether attention and MLP run in parallel, the LoRA
target modules and the tiny random test model. The EAP site maps (:mod:`circuitft.eap.sites`), the graph
shape (:meth:`circuitft.eap.graph.GraphConfig.from_hf_config`), the LoRA defaults
(:mod:`circuitft.models.checkpoint`) and the tiny test models (:mod:`circuitft.models.tiny`) all read it.
It sits in ``models`` so that data flows one way (models -> eap, models -> training).
What each QKV layout kind means is code in one place: :func:`circuitft.eap.sites.qkv_slots`.

Adding a family that fits the existing layouts is one entry (plus its tiny config for the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from circuitft.errors import ConfigError

QKVLayout = Literal["separate", "fused", "fused_per_head"]
"""``separate``: q, k, v modules; ``fused``: one module whose output is [q (H*dh) | k (G*dh) | v (G*dh)];
``fused_per_head``: one module whose output is [H, (q, k, v), dh] (GPT-NeoX)."""

NormStyle = Literal["rms", "rms_offset", "layer"]
"""``rms``: weight * x / rms(x); ``rms_offset``: (1 + weight) * x / rms(x) (Gemma); ``layer``: LayerNorm."""


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: module paths (dotted, relative as noted), layout and norms, LoRA targets, tiny model.

    Norm fields name a module of the decoder layer or ``None`` when the block has no such norm:
    ``attn_norm`` / ``mlp_norm`` are applied to the residual before attention / MLP (pre-norm),
    ``post_attn_norm`` / ``post_mlp_norm`` to the attention / MLP output before it is added back (Gemma 2/3,
    OLMo 2). Without a pre-norm the block reads the residual itself; ``mlp_norm == attn_norm`` means one norm
    feeds both (GPT-J's ``ln_1``).
    """

    hf_class: str  # transformers class of the causal LM
    base: str  # the decoder stack, relative to the causal LM
    layers: str  # relative to ``base``
    embed: str  # token embedding, relative to ``base`` (its output is the ``input`` node)
    final_norm: str  # relative to ``base`` (its input is the ``logits`` destination)
    attn: str  # relative to a layer
    qkv: tuple[str, ...]  # relative to ``attn``: (q, k, v) for ``separate``, else the one fused module
    layout: QKVLayout
    out_proj: str  # relative to ``attn``
    mlp: str  # relative to a layer; the whole block is one MLP node (also a mixture of experts)
    attn_norm: str | None
    mlp_norm: str | None
    post_attn_norm: str | None = None
    post_mlp_norm: str | None = None
    norm: NormStyle = "rms"
    parallel: bool | str = False  # or the config attribute that says whether attention/MLP are parallel
    conv1d: bool = False  # weights stored [in, out] (GPT-2's Conv1D)
    lora_targets: tuple[str, ...] | str = "all-linear"
    tiny: str | None = None  # name of the tiny random test model
    tiny_config: dict[str, Any] = field(default_factory=dict)  # its config arguments (beyond the shared ones)

    def is_parallel(self, config: Any) -> bool:
        """Whether attention and MLP read the same residual (GPT-NeoX with ``use_parallel_residual``)."""
        if isinstance(self.parallel, str):
            return bool(getattr(config, self.parallel, False))
        return self.parallel


_SMALL = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64)
_GQA = dict(_SMALL, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
_LLAMA_PATHS = dict(
    base="model",
    layers="layers",
    embed="embed_tokens",
    final_norm="norm",
    attn="self_attn",
    qkv=("q_proj", "k_proj", "v_proj"),
    layout="separate",
    out_proj="o_proj",
    mlp="mlp",
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
)
_GEMMA = dict(
    _LLAMA_PATHS,
    mlp_norm="pre_feedforward_layernorm",
    post_attn_norm="post_attention_layernorm",
    post_mlp_norm="post_feedforward_layernorm",
    norm="rms_offset",
)
# Gemma tiny models: sliding window 3 (shorter than the test prompts), soft-capping that bites at tiny scale.
_GEMMA_TINY = dict(
    _GQA,
    head_dim=8,
    query_pre_attn_scalar=8,
    sliding_window=3,
    attn_logit_softcapping=5.0,
    final_logit_softcapping=5.0,
    attn_implementation="eager",
)
_MOE_TINY = dict(
    _GQA,
    num_experts=4,
    num_experts_per_tok=2,
    moe_intermediate_size=32,
    decoder_sparse_step=1,
    mlp_only_layers=[],
    experts_implementation="eager",
)

_ATTN_ONLY = ("q_proj", "k_proj", "v_proj", "o_proj")

ARCHITECTURES: dict[str, ArchSpec] = {
    "gpt2": ArchSpec(
        "GPT2LMHeadModel",
        base="transformer",
        layers="h",
        embed="wte",
        final_norm="ln_f",
        attn="attn",
        qkv=("c_attn",),
        layout="fused",
        out_proj="c_proj",
        mlp="mlp",
        attn_norm="ln_1",
        mlp_norm="ln_2",
        norm="layer",
        conv1d=True,
        lora_targets=("c_attn", "c_proj", "c_fc"),
        tiny="tiny-gpt2",
        tiny_config=dict(n_layer=2, n_head=4, n_embd=32, n_positions=128),
    ),
    "gpt_neox": ArchSpec(
        "GPTNeoXForCausalLM",
        base="gpt_neox",
        layers="layers",
        embed="embed_in",
        final_norm="final_layer_norm",
        attn="attention",
        qkv=("query_key_value",),
        layout="fused_per_head",
        out_proj="dense",
        mlp="mlp",
        attn_norm="input_layernorm",
        mlp_norm="post_attention_layernorm",
        norm="layer",
        parallel="use_parallel_residual",
        lora_targets=("query_key_value",),  # peft's default for GPT-NeoX, as in the prior work
        tiny="tiny-neox",
        tiny_config=dict(_SMALL, max_position_embeddings=128, use_parallel_residual=True, rotary_pct=0.25),
    ),
    "llama": ArchSpec("LlamaForCausalLM", **_LLAMA_PATHS, tiny="tiny-llama", tiny_config=_GQA),
    "mistral": ArchSpec("MistralForCausalLM", **_LLAMA_PATHS, tiny="tiny-mistral", tiny_config=_GQA),
    "qwen2": ArchSpec("Qwen2ForCausalLM", **_LLAMA_PATHS, tiny="tiny-qwen2", tiny_config=_GQA),
    # q_norm / k_norm act per head on the projection outputs: the per-head chunks stay the destinations
    "qwen3": ArchSpec(
        "Qwen3ForCausalLM", **_LLAMA_PATHS, tiny="tiny-qwen3", tiny_config=dict(_GQA, head_dim=8)
    ),
    "gemma2": ArchSpec("Gemma2ForCausalLM", **_GEMMA, tiny="tiny-gemma2", tiny_config=_GEMMA_TINY),
    "gemma3_text": ArchSpec(
        "Gemma3ForCausalLM",
        **_GEMMA,
        tiny="tiny-gemma3",
        tiny_config=dict(_GEMMA_TINY, layer_types=["sliding_attention", "full_attention"]),
    ),
    # OLMo 2: no pre-norms (attention and MLP read the residual), norms after both; q/k norms over all heads
    "olmo2": ArchSpec(
        "Olmo2ForCausalLM",
        **dict(_LLAMA_PATHS, attn_norm=None, mlp_norm=None),
        post_attn_norm="post_attention_layernorm",
        post_mlp_norm="post_feedforward_layernorm",
        tiny="tiny-olmo2",
        tiny_config=_GQA,
    ),
    # Phi-3: fused [q | k | v] projection (grouped k/v) and fused gate/up (inside the MLP node)
    "phi3": ArchSpec(
        "Phi3ForCausalLM",
        **dict(_LLAMA_PATHS, qkv=("qkv_proj",), layout="fused"),
        tiny="tiny-phi3",
        tiny_config=_GQA,
    ),
    # GPT-J: attention and MLP in parallel behind one shared LayerNorm (ln_1), rotary, no biases
    "gptj": ArchSpec(
        "GPTJForCausalLM",
        base="transformer",
        layers="h",
        embed="wte",
        final_norm="ln_f",
        attn="attn",
        qkv=("q_proj", "k_proj", "v_proj"),
        layout="separate",
        out_proj="out_proj",
        mlp="mlp",
        attn_norm="ln_1",
        mlp_norm="ln_1",
        norm="layer",
        parallel=True,
        lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"),
        tiny="tiny-gptj",
        tiny_config=dict(n_layer=2, n_head=4, n_embd=32, n_inner=64, n_positions=128, rotary_dim=4),
    ),
    # Mixtures of experts: the sparse expert block (router and experts; Qwen2-MoE adds a gated shared expert)
    # is one MLP node. Experts are 3-D parameters, not Linear modules, so LoRA targets attention only. The tiny
    # models use the per-expert loop, which also runs in float64 (tests).
    "mixtral": ArchSpec(
        "MixtralForCausalLM",
        **_LLAMA_PATHS,
        lora_targets=_ATTN_ONLY,
        tiny="tiny-mixtral",
        tiny_config=dict(
            _GQA,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            experts_implementation="eager",
        ),
    ),
    "qwen2_moe": ArchSpec(
        "Qwen2MoeForCausalLM",
        **_LLAMA_PATHS,
        lora_targets=_ATTN_ONLY,
        tiny="tiny-qwen2moe",
        tiny_config=dict(_MOE_TINY, shared_expert_intermediate_size=32),
    ),
    "qwen3_moe": ArchSpec(
        "Qwen3MoeForCausalLM",
        **_LLAMA_PATHS,
        lora_targets=_ATTN_ONLY,
        tiny="tiny-qwen3moe",
        tiny_config=dict(_MOE_TINY, head_dim=8),
    ),
}


def model_shape(config: Any) -> tuple[int, int, int, int]:
    """(layers, query heads, key/value heads, d_model) of a Hugging Face config (GPT-2 or Llama names)."""
    n_layers = _first(config, "num_hidden_layers", "n_layer")
    n_heads = _first(config, "num_attention_heads", "n_head")
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    return n_layers, n_heads, int(n_kv), _first(config, "hidden_size", "n_embd")


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ConfigError(f"model config has none of {', '.join(names)}")


def supported() -> str:
    """The supported model types, comma-separated (for error messages)."""
    return ", ".join(ARCHITECTURES)


def arch_spec(config: Any) -> ArchSpec:
    """The table entry of a Hugging Face config; an unknown ``model_type`` is a one-line ConfigError."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        arch = ", ".join(getattr(config, "architectures", None) or [type(config).__name__])
        raise ConfigError(
            f"EAP does not support model type {model_type!r} ({arch}); supported: {supported()}"
        )
    return ARCHITECTURES[model_type]


def tiny_architectures() -> dict[str, tuple[str, ArchSpec]]:
    """Tiny model name -> (model type, table entry), in table order."""
    return {spec.tiny: (mt, spec) for mt, spec in ARCHITECTURES.items() if spec.tiny}
