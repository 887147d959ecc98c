"""Where EAP's sources and destinations live in a plain Hugging Face causal LM, built from the architecture table.

Attribution hooks the model's own modules (its attention implementation, e.g. sdpa, is kept); nothing is
copied per head in the forward pass. Per layer a :class:`LayerSites` names

- ``attn_norm`` / ``mlp_norm``: the modules whose *inputs* are the residual read by attention and by the MLP
  (the destinations): the pre-norms, or, in a block without pre-norms (OLMo 2), the first q/k/v module and
  the MLP itself; ``final_norm`` (model level) has the ``logits`` destination as its input. When the MLP
  shares attention's pre-norm (GPT-J's ``ln_1``), ``mlp_norm`` is the MLP and ``mlp_shared_norm`` that norm:
  the MLP's destination is still the residual, and patching feeds the MLP ``norm(patched residual)``;
- ``projections``: the q/k/v projection modules; each output is cut into chunks of ``head_dim`` columns, chunk
  j feeding attention-destination slot ``slots[j]`` (slots: q heads 0..H-1, k groups H..H+G-1, v groups
  H+G..H+2G-1, as in :mod:`circuitft.eap.graph`), with its weight rows ``weight[j]`` ([dh, d_model]);
- ``out_proj``: the attention output projection; head h writes ``z_h @ out_weight[h]`` (bias excluded);
- ``post_attn_norm``: a norm on the attention output (Gemma 2/3, OLMo 2). The sum of the heads' writes then
  passes an RMSNorm before it reaches the residual, so a head's write is defined as its share of the
  norm's output, ``gain * (z_h @ out_weight[h]) / rms(attention output)``, with the rms of the run it comes
  from (clean heads carry the clean run's scale, corrupted heads the corrupted run's). The shares add up to
  the norm's output exactly in every run;
- ``attn`` / ``mlp``: whole blocks (``mlp_out``, the MLP or its post-norm, writes the MLP node's output; the
  attention output is used by EAP-IG-activations).

Families and their module paths: :data:`circuitft.models.architectures.ARCHITECTURES`. What each QKV layout
kind means: :func:`qkv_slots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from circuitft.errors import ConfigError
from circuitft.models.architectures import ArchSpec, QKVLayout, arch_spec, model_shape

NormKind = Literal["rms", "layer", "none"]


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
    mlp_out: nn.Module | None = None  # module whose output is the MLP node's write (None: ``mlp``)
    post_attn_norm: nn.Module | None = None  # RMSNorm on the attention output (heads write their shares)
    mlp_shared_norm: nn.Module | None = None  # the pre-norm the MLP shares with attention (GPT-J); then
    # ``mlp_norm`` is the MLP itself, whose input is this norm's output, not the residual
    attn_gain: torch.Tensor | None = None  # effective gain of the attention pre-norm (None: no pre-norm)
    attn_eps: float = 0.0
    post_attn_gain: torch.Tensor | None = None  # effective gain of ``post_attn_norm``
    post_attn_eps: float = 0.0

    def __post_init__(self) -> None:
        if self.mlp_out is None:
            self.mlp_out = self.mlp

    @property
    def mlp_resid_site(self) -> nn.Module:
        """The module whose input is the residual the MLP reads."""
        return self.mlp_norm if self.mlp_shared_norm is None else self.mlp_shared_norm

    def post_attn_scale(self, attn_out: torch.Tensor) -> torch.Tensor:
        """gain / rms(attention output) [..., d]: multiplies a head's write into its share (see module doc)."""
        a = attn_out.float()
        return self.post_attn_gain.float() * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + self.post_attn_eps)


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
    norm_kind: NormKind  # of the attention pre-norm ("none": attention reads the residual)

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return len(self.layers)

    @property
    def attn_slots(self) -> int:
        """Attention destinations per layer: H q heads + G k groups + G v groups."""
        return self.n_heads + 2 * self.n_kv_heads


def norm_kind(spec: ArchSpec) -> NormKind:
    """The kind of the family's pre-norms, as :class:`ArchSpec` declares it (``none``: no attention pre-norm).

    The architecture table is the one place that says which normalisation a family uses; the engine's
    hand-written norm gradients follow it, and :func:`check_norm` confirms each module computes it.
    """
    if not spec.attn_norm:
        return "none"
    return "layer" if spec.norm == "layer" else "rms"


def check_norm(module: nn.Module, kind: NormKind, spec: ArchSpec, where: str) -> None:
    """Raise :class:`ConfigError` unless ``module`` computes the ``kind`` norm the table declares.

    One forward pass on a fixed input (offset from zero, so LayerNorm and RMSNorm differ), compared with
    the formula the engine differentiates by hand: ``gain * x / rms(x)`` or ``gain * (x - mean) / std + bias``.
    A family whose norm is neither kind would otherwise get silently wrong gradients.
    """
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        raise ConfigError(f"EAP: {where} ({type(module).__name__}) has no 1-d weight; expected a {kind} norm")
    if weight.device.type == "meta":
        return
    if not any(hasattr(module, name) for name in ("eps", "variance_epsilon")):
        raise ConfigError(f"EAP: {where} ({type(module).__name__}) has no epsilon; expected a {kind} norm")
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(4, weight.shape[0], generator=gen) * 2.0 + 1.5).to(weight.device, weight.dtype)
    with torch.no_grad():
        got = module(x).float()
        xf = x.float()
        if kind == "layer":
            xf = xf - xf.mean(-1, keepdim=True)
        want = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm_eps(module))
        want = want * norm_gain(module, spec).float()
        bias = getattr(module, "bias", None)
        if kind == "layer" and isinstance(bias, torch.Tensor):
            want = want + bias.detach().float()
    tol = 1e-4 if weight.dtype == torch.float32 or weight.dtype == torch.float64 else 5e-2
    err = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
    if not err <= tol:
        raise ConfigError(
            f"EAP: {where} ({type(module).__name__}) does not compute the {kind} norm that the architecture "
            f"table declares for this family (max relative difference {err:.2g}); fix ArchSpec.norm"
        )


def norm_eps(module: nn.Module) -> float:
    """The epsilon of a LayerNorm or RMSNorm module."""
    if isinstance(module, nn.LayerNorm) or not hasattr(module, "variance_epsilon"):
        return float(module.eps)
    return float(module.variance_epsilon)


def norm_gain(module: nn.Module, spec: ArchSpec) -> torch.Tensor:
    """The norm's effective gain: its weight, or 1 + weight for Gemma's RMSNorm."""
    weight = module.weight.detach()
    return weight + 1.0 if spec.norm == "rms_offset" else weight


def qkv_slots(layout: QKVLayout, n_heads: int, n_kv: int) -> list[list[int]]:
    """For each q/k/v module of a layout, the destination slot of each of its ``head_dim`` output chunks.

    - ``separate`` (q, k, v modules): q chunks are heads 0..H-1, k chunks groups H..H+G-1, v H+G..H+2G-1;
    - ``fused`` (one module, output [q | k | v]): the three ranges concatenated;
    - ``fused_per_head`` (GPT-NeoX, output viewed as [H, 3, dh]): chunk 3h = q of head h, 3h+1 its k, 3h+2 its v.
    """
    h, g = n_heads, n_kv
    q, k, v = list(range(h)), list(range(h, h + g)), list(range(h + g, h + 2 * g))
    if layout == "separate":
        return [q, k, v]
    if layout == "fused":
        return [q + k + v]
    if layout == "fused_per_head":
        if g != h:
            raise ConfigError("EAP: the fused per-head q/k/v layout has no grouped-query variant")
        return [[s for head in range(h) for s in (head, h + head, 2 * h + head)]]
    raise ConfigError(f"EAP: unknown q/k/v layout {layout!r}")


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


def _module(root: nn.Module, path: str, model_type: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise ConfigError(
            f"EAP: architecture table entry {model_type!r}: module {path} does not exist on the loaded model"
        ) from None


def model_sites(model: nn.Module) -> ModelSites:
    """The site map of ``model`` from its table entry; an unsupported model type, or a table path missing from
    the model, raises a one-line :class:`ConfigError`."""
    config = getattr(model, "config", None)
    spec = arch_spec(config)
    model_type = config.model_type
    if getattr(config, "add_cross_attention", False):
        raise ConfigError(f"EAP does not support {model_type} models with cross-attention")
    n_layers, h, g, d = model_shape(config)

    def get(path: str) -> nn.Module:
        return _module(model, path, model_type)

    slots = qkv_slots(spec.layout, h, g)
    if len(spec.qkv) != len(slots):
        raise ConfigError(
            f"EAP: table entry {model_type!r} names {len(spec.qkv)} q/k/v modules for {spec.layout}"
        )
    layers = [
        _layer_sites(get, spec, f"{spec.base}.{spec.layers}.{i}.", slots, h, d) for i in range(n_layers)
    ]
    kind = norm_kind(spec)
    if kind != "none":
        for i, ls in enumerate(layers):
            check_norm(ls.attn_norm, kind, spec, f"{spec.base}.{spec.layers}.{i}.{spec.attn_norm}")
    dh = layers[0].out_weight.shape[1]
    return ModelSites(
        model_type,
        get(f"{spec.base}.{spec.embed}"),
        get(f"{spec.base}.{spec.final_norm}"),
        layers,
        h,
        g,
        dh,
        d,
        spec.is_parallel(config),
        kind,
    )


def _layer_sites(get, spec: ArchSpec, layer: str, slots: list[list[int]], h: int, d: int) -> LayerSites:
    """The sites of the decoder layer at path ``layer`` (with a trailing dot)."""
    at_path = f"{layer}{spec.attn}"
    modules = [get(f"{at_path}.{name}") for name in spec.qkv]
    weights = [m.weight.T if spec.conv1d else m.weight for m in modules]
    dh = sum(w.shape[0] for w in weights) // sum(len(s) for s in slots)
    projections = [
        _projection(m, w, getattr(m, "bias", None), dh, s)
        for m, w, s in zip(modules, weights, slots, strict=True)
    ]
    out = get(f"{at_path}.{spec.out_proj}")
    out_w = out.weight.detach() if spec.conv1d else out.weight.detach().T  # [H*dh, d]
    attn_norm = get(layer + spec.attn_norm) if spec.attn_norm else modules[0]
    mlp = get(layer + spec.mlp)
    shared = spec.mlp_norm is not None and spec.mlp_norm == spec.attn_norm
    ls = LayerSites(
        attn_norm,
        get(layer + spec.mlp_norm) if spec.mlp_norm and not shared else mlp,
        get(at_path),
        out,
        out_w.reshape(h, dh, d).contiguous(),
        mlp,
        projections,
        mlp_out=get(layer + spec.post_mlp_norm) if spec.post_mlp_norm else mlp,
        mlp_shared_norm=attn_norm if shared else None,
    )
    if spec.attn_norm:
        ls.attn_gain, ls.attn_eps = norm_gain(attn_norm, spec), norm_eps(attn_norm)
    if spec.post_attn_norm:
        if getattr(out, "bias", None) is not None:
            raise ConfigError(f"EAP: {layer}{spec.attn}: an output bias behind a post-attention norm")
        post = get(layer + spec.post_attn_norm)
        if spec.norm == "layer":
            raise ConfigError(f"EAP: {layer}{spec.post_attn_norm}: a post-attention norm must be an RMSNorm")
        check_norm(post, "rms", spec, layer + spec.post_attn_norm)
        ls.post_attn_norm, ls.post_attn_gain, ls.post_attn_eps = post, norm_gain(post, spec), norm_eps(post)
    return ls


def check_graph(sites: ModelSites, cfg: object) -> None:
    """Raise :class:`ConfigError` if a graph config does not match the model's shape."""
    want = (sites.n_layers, sites.n_heads, sites.n_kv_heads, sites.parallel_attn_mlp)
    have = (cfg.n_layers, cfg.n_heads, cfg.groups, cfg.parallel_attn_mlp)  # type: ignore[attr-defined]
    if want != have:
        raise ConfigError(
            f"graph shape (layers, heads, kv groups, parallel) {have} does not match the model's {want}"
        )
