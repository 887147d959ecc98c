"""Hook machinery on a :class:`~circuitft.eap.sites.ModelSites`: source capture, destination gradients, patching.

Buffers are laid out source-major so that every contraction is one matrix product:

- ``delta`` [n_forward, B, T, d]: source outputs (``input``, each head's own write, each MLP output);
- ``acc`` [n_backward, B, T, d]: gradients of the loss w.r.t. each destination input (pre-norm residual),
  summed over gradient passes.

Destination gradients come without per-head activation copies: the q/k/v projection *output* gradient of
each head is mapped back with its own weight rows and pushed through the norm's backward by hand
(:func:`norm_backward`), using the norm input saved in the forward pass. MLP and logits destination
gradients come from an alias of the norm input (``x.view_as(x)``) whose gradient is exactly the gradient
through that norm alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from circuitft.eap.graph import GraphConfig
from circuitft.eap.metrics import wide
from circuitft.eap.sites import LayerSites, ModelSites, norm_eps

Handles = list[Any]


@contextmanager
def hooked(handles: Handles) -> Iterator[None]:
    """Remove every hook handle in ``handles`` on exit."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        handles.clear()


def head_outputs(z: torch.Tensor, out_weight: torch.Tensor) -> torch.Tensor:
    """[H, B, T, d]: each head's write to the residual from the concatenated head outputs z [B, T, H*dh]."""
    b, t, _ = z.shape
    h, dh, _ = out_weight.shape
    return torch.einsum("bthk,hkd->hbtd", z.reshape(b, t, h, dh), out_weight.to(z.dtype))


def capture_sources(
    sites: ModelSites, cfg: GraphConfig, delta: torch.Tensor, mode: Literal["set", "sub"]
) -> Handles:
    """Forward hooks writing (``set``) or subtracting (``sub``) each source's output into ``delta``."""

    def put(index: slice | int, value: torch.Tensor) -> None:
        value = value.detach().to(delta.dtype)
        if mode == "set":
            delta[index] = value
        else:
            delta[index] -= value

    handles: Handles = [sites.embed.register_forward_hook(lambda m, a, out: put(0, out))]
    for layer, ls in enumerate(sites.layers):
        first = cfg.head_index(layer, 0)
        heads = slice(first, first + cfg.n_heads)

        def on_z(module, args, heads=heads, ls=ls):
            put(heads, head_outputs(args[0].detach(), ls.out_weight))

        def on_mlp(module, args, out, index=cfg.mlp_index(layer)):
            put(index, out)

        handles.append(ls.out_proj.register_forward_pre_hook(on_z))
        handles.append(ls.mlp.register_forward_hook(on_mlp))
    return handles


# ---- norm backward by hand ---------------------------------------------------------------------------
def norm_stats(x: torch.Tensor, kind: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, n): r = 1/sqrt(mean(x^2)+eps) (RMS) or 1/sqrt(var+eps) (LayerNorm) [.., 1], n the normalised x."""
    x = wide(x)
    if kind == "rms":
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return r, x * r
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    r = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    return r, xc * r


def norm_backward(
    u: torch.Tensor, r: torch.Tensor, n: torch.Tensor, gamma: torch.Tensor, kind: str
) -> torch.Tensor:
    """Gradient w.r.t. the norm input from the gradient ``u`` w.r.t. its output (u may carry leading dims).

    RMSNorm y = gamma * x r: dx = r (gu - n mean(gu n)); LayerNorm y = gamma * xhat + beta:
    dx = r (gu - mean(gu) - xhat mean(gu xhat)), with gu = gamma * u.
    """
    gu = wide(u) * gamma.to(wide(u).dtype)
    proj = (gu * n).mean(-1, keepdim=True)
    if kind == "rms":
        return r * (gu - n * proj)
    return r * (gu - gu.mean(-1, keepdim=True) - n * proj)


class GradCollector:
    """Hooks that add d(loss)/d(destination input) into ``acc`` [n_backward, B, T, d] on every backward."""

    def __init__(self, sites: ModelSites, cfg: GraphConfig, acc: torch.Tensor) -> None:
        self.sites, self.cfg, self.acc = sites, cfg, acc
        self._stats: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * sites.n_layers
        self._gamma = [ls.attn_norm.weight.detach() for ls in sites.layers]
        self._eps = [norm_eps(ls.attn_norm) for ls in sites.layers]

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        handles: Handles = []
        cfg = self.cfg
        for layer, ls in enumerate(self.sites.layers):
            handles.append(ls.attn_norm.register_forward_pre_hook(self._save_stats(layer)))
            for proj in ls.projections:
                handles.append(proj.module.register_forward_hook(self._on_projection(layer, proj)))
            handles.append(ls.mlp_norm.register_forward_pre_hook(self._alias(cfg.mlp_in_index(layer))))
        handles.append(self.sites.final_norm.register_forward_pre_hook(self._alias(cfg.logits_index)))
        return handles

    def _save_stats(self, layer: int):
        def hook(module, args):
            with torch.no_grad():
                self._stats[layer] = norm_stats(args[0].detach(), self.sites.norm_kind, self._eps[layer])

        return hook

    def _on_projection(self, layer: int, proj):
        base = layer * self.cfg.layer_width
        weight = proj.weight

        def on_grad(g: torch.Tensor) -> None:
            with torch.no_grad():
                b, t, _ = g.shape
                n = weight.shape[0]
                u = torch.einsum("btnk,nkd->nbtd", g.reshape(b, t, n, -1), weight.to(g.dtype))
                r, normed = self._stats[layer]
                gx = norm_backward(u, r, normed, self._gamma[layer], self.sites.norm_kind).to(self.acc.dtype)
                if proj.start is not None:
                    self.acc[base + proj.start : base + proj.start + n] += gx
                else:
                    self.acc.index_add_(0, proj.slots.to(gx.device) + base, gx)

        def hook(module, args, out):
            if out.requires_grad:
                out.register_hook(on_grad)

        return hook

    def _alias(self, column: int):
        def on_grad(g: torch.Tensor) -> None:
            self.acc[column] += g.detach().to(self.acc.dtype)

        def hook(module, args):
            x = args[0]
            if not x.requires_grad:
                return None
            alias = x.view_as(x)
            alias.register_hook(on_grad)
            return (alias, *args[1:])

        return hook


# ---- patching (evaluation and exact attribution) -------------------------------------------------------
class Patcher:
    """Hooks for a patched clean run: every edge with ``notin`` True delivers its source's corrupted output.

    Before the patched run ``delta`` must hold the corrupted source outputs (:func:`capture_sources` with
    ``set``); during it, source hooks subtract the current outputs as they are produced, and each destination
    input gets the sum of ``delta`` over its parents u with ``notin[u, v]``. Heads whose q/k/v inputs get a
    patch have their projection chunk recomputed from ``norm(x + patch)``.
    """

    def __init__(self, sites: ModelSites, cfg: GraphConfig, notin: torch.Tensor, delta: torch.Tensor) -> None:
        self.sites, self.cfg, self.delta = sites, cfg, delta
        notin = notin.to(delta.device) & cfg.real_edge_mask.to(delta.device)
        self.any = bool(notin.any())
        dt = delta.dtype
        w = cfg.layer_width
        self._attn: list[tuple[torch.Tensor, torch.Tensor, int] | None] = []
        self._mlp: list[torch.Tensor | None] = []
        for layer in range(cfg.n_layers):
            prev = cfg.attn_prev(layer)
            block = notin[:prev, layer * w : layer * w + w - 1]
            slots = block.any(0).nonzero().flatten()
            self._attn.append((block[:, slots].T.to(dt), slots, prev) if len(slots) else None)
            col = notin[: cfg.mlp_prev(layer), cfg.mlp_in_index(layer)]
            self._mlp.append(col.to(dt) if col.any() else None)
        col = notin[:, cfg.logits_index]
        self._logits = col.to(dt) if col.any() else None
        self._normed: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * cfg.n_layers

    def _sum(self, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sum over sources of delta: weights [k, prev] -> [k, B, T, d]."""
        prev = weights.shape[-1]
        flat = self.delta[:prev].reshape(prev, -1)
        return (weights @ flat).reshape(weights.shape[0], *self.delta.shape[1:])

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        handles = capture_sources(self.sites, self.cfg, self.delta, "sub")
        for layer, ls in enumerate(self.sites.layers):
            if self._attn[layer] is not None:
                handles.append(ls.attn_norm.register_forward_pre_hook(self._on_attn_norm(layer, ls)))
                for proj in ls.projections:
                    handles.append(proj.module.register_forward_hook(self._on_projection(layer, proj)))
            if self._mlp[layer] is not None:
                handles.append(ls.mlp_norm.register_forward_pre_hook(self._add(self._mlp[layer])))
        if self._logits is not None:
            handles.append(self.sites.final_norm.register_forward_pre_hook(self._add(self._logits)))
        return handles

    def _add(self, weights: torch.Tensor):
        def hook(module, args):
            x = args[0]
            return (x + self._sum(weights[None])[0].to(x.dtype), *args[1:])

        return hook

    def _on_attn_norm(self, layer: int, ls: LayerSites):
        weights, slots, _ = self._attn[layer]

        def hook(module, args):
            x = args[0]
            patched = x[None] + self._sum(weights).to(x.dtype)  # [k, B, T, d]
            self._normed[layer] = (module.forward(patched), slots)
            return None

        return hook

    def _on_projection(self, layer: int, proj):
        def hook(module, args, out):
            normed, slots = self._normed[layer]
            # chunks of this projection whose slot is patched, and where that slot sits in `normed`
            chunk_of = {int(s): j for j, s in enumerate(proj.slots.tolist())}
            pick = [(chunk_of[int(s)], k) for k, s in enumerate(slots.tolist()) if int(s) in chunk_of]
            if not pick:
                return None
            chunks = torch.tensor([c for c, _ in pick], device=out.device)
            rows = torch.tensor([k for _, k in pick], device=out.device)
            w = proj.weight[chunks].to(out.dtype)  # [m, dh, d]
            new = torch.einsum("mbtd,mkd->btmk", normed[rows], w)
            if proj.bias is not None:
                new = new + proj.bias[chunks].to(out.dtype)
            b, t, _ = out.shape
            out = out.clone()
            out.view(b, t, -1, w.shape[1])[:, :, chunks] = new
            return out

        return hook
