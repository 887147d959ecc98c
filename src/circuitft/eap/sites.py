"""Where EAP's sources and destinations live in a plain Hugging Face causal LM (per-architecture site maps).

Attribution hooks the model's own modules (its attention implementation, e.g. sdpa, is kept); nothing is
copied per head in the forward pass. Per layer a :class:`LayerSites` names

- ``attn_norm`` / ``mlp_norm``: the norms whose *inputs* are the attention and MLP destinations (pre-LN
  residual), and ``final_norm`` (model level) whose input is the ``logits`` destination;
- ``projections``: the q/k/v projection modules; each output is cut into chunks of ``head_dim`` columns, chunk
  j feeding attention-destination slot ``slots[j]`` (slots: q heads 0..H-1, k groups H..H+G-1, v groups
  H+G..H+2G-1, as in :mod:`circuitft.eap.graph`), with its weight rows ``weight[j]`` ([dh, d_model]);
- ``out_proj``: the attention output projection; head h writes ``z_h @ out_weight[h]`` (bias excluded);
- ``attn`` / ``mlp``: whole blocks (the MLP output is a source; the attention output is used by
  EAP-IG-activations).

Supported: Llama-style (``llama``, ``mistral``, ``qwen2``), ``gpt2`` (fused Conv1D ``c_attn``) and
``gpt_neox`` (fused ``query_key_value`` laid out per head as [q | k | v], parallel or sequential).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from circuitft.errors import ConfigError

LLAMA_LIKE = ("llama", "mistral", "qwen2")
SUPPORTED = (*LLAMA_LIKE, "gpt2", "gpt_neox")
NormKind = Literal["rms", "layer"]


@dataclass
class Projection:
    """A q/k/v projection: output chunk j (``head_dim`` columns) is attention-destination slot ``slots[j]``."""

    module: nn.Module
    weight: torch.Tensor  # [n, dh, d_model]: chunk j = normed_input @ weight[j].T (+ bias[j])
    bias: torch.Tensor | None  # [n, dh]
    slots: torch.Tensor  # [n] long
    start: int | None  # slots == range(start, start + n) when not None (then a slice is enough)


@dataclass
class LayerSites:
    """One transformer block's hook sites."""

    attn_norm: nn.Module
    mlp_norm: nn.Module
    attn: nn.Module
    out_proj: nn.Module
    out_weight: torch.Tensor  # [H, dh, d_model]
    mlp: nn.Module
    projections: list[Projection]


@dataclass
class ModelSites:
    """All hook sites of a model plus the shapes EAP needs."""

    model_type: str
    embed: nn.Module
    final_norm: nn.Module
    layers: list[LayerSites]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int
    parallel_attn_mlp: bool
    norm_kind: NormKind

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.layers)

    @property
    def attn_slots(self) -> int:
        """Attention destinations per layer: H q heads + G k groups + G v groups."""
        return self.n_heads + 2 * self.n_kv_heads


def norm_kind(module: nn.Module) -> NormKind:
    """``layer`` for LayerNorm, ``rms`` for Llama-style RMSNorm (weight * x / rms(x))."""
    if isinstance(module, nn.LayerNorm):
        return "layer"
    if hasattr(module, "variance_epsilon") and hasattr(module, "weight"):
        return "rms"
    raise ConfigError(f"EAP: unsupported normalisation module {type(module).__name__}")


def norm_eps(module: nn.Module) -> float:
    """The epsilon of a LayerNorm or RMSNorm module."""
    return float(module.eps if isinstance(module, nn.LayerNorm) else module.variance_epsilon)


def _chunks(
    weight_out_in: torch.Tensor, bias: torch.Tensor | None, dh: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    w = weight_out_in.detach()
    n = w.shape[0] // dh
    return w.reshape(n, dh, w.shape[1]), None if bias is None else bias.detach().reshape(n, dh)


def _projection(
    module: nn.Module, w_out_in: torch.Tensor, bias: torch.Tensor | None, dh: int, slots: list[int]
) -> Projection:
    weight, b = _chunks(w_out_in, bias, dh)
    if weight.shape[0] != len(slots):
        raise ConfigError(
            f"EAP: projection {type(module).__name__} has {weight.shape[0]} heads, expected {len(slots)}"
        )
    contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
    return Projection(
        module, weight, b, torch.tensor(slots, dtype=torch.long), slots[0] if contiguous else None
    )


def model_sites(model: nn.Module) -> ModelSites:
    """The site map of ``model``; unsupported architectures raise a one-line :class:`ConfigError`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type in LLAMA_LIKE:
        return _llama_sites(model, model_type)
    if model_type == "gpt2":
        return _gpt2_sites(model)
    if model_type == "gpt_neox":
        return _neox_sites(model)
    arch = ", ".join(getattr(config, "architectures", None) or [type(model).__name__])
    raise ConfigError(
        f"EAP does not support model type {model_type!r} ({arch}); supported: {', '.join(SUPPORTED)}"
    )


def _llama_sites(model: nn.Module, model_type: str) -> ModelSites:
    base = model.model
    cfg = model.config
    h, g = cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads
    first = base.layers[0].self_attn
    dh = first.q_proj.weight.shape[0] // h
    layers = []
    for layer in base.layers:
        at = layer.self_attn
        projections = [
            _projection(at.q_proj, at.q_proj.weight, at.q_proj.bias, dh, list(range(h))),
            _projection(at.k_proj, at.k_proj.weight, at.k_proj.bias, dh, list(range(h, h + g))),
            _projection(at.v_proj, at.v_proj.weight, at.v_proj.bias, dh, list(range(h + g, h + 2 * g))),
        ]
        out_w = at.o_proj.weight.detach().T.reshape(h, dh, -1).contiguous()  # [H*dh, d] -> [H, dh, d]
        layers.append(
            LayerSites(
                layer.input_layernorm,
                layer.post_attention_layernorm,
                at,
                at.o_proj,
                out_w,
                layer.mlp,
                projections,
            )
        )
    return ModelSites(
        model_type, base.embed_tokens, base.norm, layers, h, g, dh, cfg.hidden_size, False,
        norm_kind(base.layers[0].input_layernorm),
    )  # fmt: skip


def _gpt2_sites(model: nn.Module) -> ModelSites:
    base = model.transformer
    cfg = model.config
    if getattr(cfg, "add_cross_attention", False):
        raise ConfigError("EAP does not support GPT-2 models with cross-attention")
    h, d = cfg.n_head, cfg.n_embd
    dh = d // h
    layers = []
    for block in base.h:
        at = block.attn
        # Conv1D stores weight as [in, out]; output columns are [q (H*dh) | k | v].
        qkv = _projection(at.c_attn, at.c_attn.weight.T, at.c_attn.bias, dh, list(range(3 * h)))
        out_w = at.c_proj.weight.detach().reshape(h, dh, d).contiguous()
        layers.append(LayerSites(block.ln_1, block.ln_2, at, at.c_proj, out_w, block.mlp, [qkv]))
    return ModelSites("gpt2", base.wte, base.ln_f, layers, h, h, dh, d, False, "layer")


def _neox_sites(model: nn.Module) -> ModelSites:
    base = model.gpt_neox
    cfg = model.config
    h, d = cfg.num_attention_heads, cfg.hidden_size
    dh = d // h
    # query_key_value output viewed as [H, 3, dh]: chunk 3h+0 = q of head h, 3h+1 = k, 3h+2 = v.
    slots = [s for head in range(h) for s in (head, h + head, 2 * h + head)]
    layers = []
    for layer in base.layers:
        at = layer.attention
        qkv = _projection(at.query_key_value, at.query_key_value.weight, at.query_key_value.bias, dh, slots)
        out_w = at.dense.weight.detach().T.reshape(h, dh, d).contiguous()
        layers.append(
            LayerSites(
                layer.input_layernorm, layer.post_attention_layernorm, at, at.dense, out_w, layer.mlp, [qkv]
            )
        )
    parallel = bool(getattr(cfg, "use_parallel_residual", False))
    return ModelSites(
        "gpt_neox", base.embed_in, base.final_layer_norm, layers, h, h, dh, d, parallel, "layer"
    )


def check_graph(sites: ModelSites, cfg: object) -> None:
    """Raise :class:`ConfigError` if a graph config does not match the model's shape."""
    want = (sites.n_layers, sites.n_heads, sites.n_kv_heads, sites.parallel_attn_mlp)
    have = (cfg.n_layers, cfg.n_heads, cfg.groups, cfg.parallel_attn_mlp)  # type: ignore[attr-defined]
    if want != have:
        raise ConfigError(
            f"graph shape (layers, heads, kv groups, parallel) {have} does not match the model's {want}"
        )
