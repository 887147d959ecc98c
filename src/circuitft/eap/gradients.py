"""Destination gradients of attribution: hooks that add d(loss)/d(destination input) into a buffer.

``acc`` [n_backward, B, T, d] holds the gradients of the loss w.r.t. each destination input (pre-norm
residual), summed over gradient passes. They come without per-head activation copies: the q/k/v projection
*output* gradient of each head is mapped back with its own weight rows and pushed through the norm's
backward by hand (:func:`norm_backward`), using the norm input saved in the forward pass. MLP and logits
destination gradients come from an alias of the norm input (``x.view_as(x)``) whose gradient is exactly the
gradient through that norm alone.
"""

from __future__ import annotations

import torch

from circuitft.eap.graph import GraphConfig
from circuitft.eap.metrics import wide
from circuitft.eap.patching import Handles
from circuitft.eap.sites import LayerSites, ModelSites, Projection


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


class _ProjectionGrad:
    """Per-projection constants for the destination-gradient formula (see :class:`GradCollector`)."""

    def __init__(self, proj: Projection, ls: LayerSites, kind: str, dtype: torch.dtype) -> None:
        order = torch.argsort(proj.slots)
        slots = proj.slots[order].tolist()
        if slots != list(range(slots[0], slots[0] + len(slots))):
            raise ValueError("a projection must feed a contiguous range of destination slots")
        self.start, self.n = slots[0], len(slots)
        self.order = None if order.tolist() == list(range(self.n)) else order
        w = proj.weight[order].to(dtype)  # [n, dh, d]
        norm = ls.attn_norm
        wg = w if kind == "none" else w * ls.attn_gain.to(dtype)  # "none": attention reads the residual
        bias = (
            torch.zeros(w.shape[:2], dtype=dtype, device=w.device)
            if proj.bias is None
            else proj.bias[order].to(dtype)
        )
        if kind == "layer":
            wg = wg - wg.mean(-1, keepdim=True)  # folds LayerNorm's mean subtraction into the weights
            if getattr(norm, "bias", None) is not None:
                bias = bias + w @ norm.bias.detach().to(dtype)
        self.weight = wg.contiguous()  # [n, dh, d]
        self.bias = bias.to(w.device)  # [n, dh]: q - bias = W (gamma * normalised x)


class GradCollector:
    """Hooks that add d(loss)/d(destination input) into ``acc`` [n_backward, B, T, d] on every backward.

    For a head's q/k/v input, with g the gradient at its projection output chunk, W its weight rows,
    gamma the norm's gain and (r, n) the norm's inverse scale and normalised input:

        grad = r g (W * gamma)  -  (r n) * (g . W(gamma n)) / d        (RMSNorm; LayerNorm: W * gamma centred)

    and W(gamma n) is just the projection output minus its (effective) bias (without a pre-norm:
    grad = g W). W is the same in every pass, so the first term is summed over passes as r g ([B*T, dh] per
    head) and multiplied by W once, in :meth:`finish` (one batched matmul per projection and batch); the
    second is one fused elementwise update per pass. A pass may run k stacked copies of the batch (k*B
    rows): the copies are summed. The first write of a batch overwrites ``acc`` (no zero fill);
    :meth:`finish` zeroes destinations that never received a gradient.
    """

    def __init__(self, sites: ModelSites, cfg: GraphConfig, acc: torch.Tensor) -> None:
        self.sites, self.cfg, self.acc = sites, cfg, acc
        self.written = torch.zeros(cfg.n_backward, dtype=torch.bool)
        self._rn: list[torch.Tensor | None] = [None] * sites.n_layers
        self._r: list[torch.Tensor | None] = [None] * sites.n_layers
        self._stats: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * sites.n_layers  # shared norms
        self._eps = [ls.attn_eps for ls in sites.layers]
        self._proj = [
            [_ProjectionGrad(p, ls, sites.norm_kind, acc.dtype) for p in ls.projections]
            for ls in sites.layers
        ]
        # per (layer, projection): sum over passes of r g, [n, B*T, dh] (float32 or wider)
        self._rg: dict[tuple[int, int], torch.Tensor] = {}

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        handles: Handles = []
        cfg = self.cfg
        for layer, ls in enumerate(self.sites.layers):
            handles.append(ls.attn_norm.register_forward_pre_hook(self._save_stats(layer)))
            for j, (proj, const) in enumerate(zip(ls.projections, self._proj[layer], strict=True)):
                handles.append(proj.module.register_forward_hook(self._on_projection(layer, j, const)))
            shared = layer if ls.mlp_shared_norm is not None else None
            handles.append(
                ls.mlp_norm.register_forward_pre_hook(self._alias(cfg.mlp_in_index(layer), shared))
            )
        handles.append(self.sites.final_norm.register_forward_pre_hook(self._alias(cfg.logits_index)))
        return handles

    def finish(self) -> torch.Tensor:
        """Add the summed first terms, zero the destinations that got no gradient in any pass; returns ``acc``."""
        bt = self.acc.shape[1] * self.acc.shape[2]
        for (layer, j), rg in self._rg.items():
            const = self._proj[layer][j]
            lo = layer * self.cfg.layer_width + const.start
            target = self.acc[lo : lo + const.n].view(const.n, bt, -1)
            if self.written[lo]:
                target.baddbmm_(rg.to(self.acc.dtype), const.weight)
            else:
                torch.bmm(rg.to(self.acc.dtype), const.weight, out=target)
                self.written[lo : lo + const.n] = True
        self._rg.clear()
        if not self.written.all():
            self.acc[(~self.written).to(self.acc.device)] = 0
        return self.acc

    def _save_stats(self, layer: int):
        def hook(module, args):
            x = args[0]
            if x.requires_grad and self.sites.norm_kind == "none":
                self._r[layer], self._rn[layer] = None, None
            elif x.requires_grad:
                with torch.no_grad():
                    r, n = norm_stats(x.detach(), self.sites.norm_kind, self._eps[layer])
                    b, t, d = x.shape
                    self._r[layer] = r.reshape(b * t, 1, 1)
                    self._rn[layer] = (r * n).to(self.acc.dtype).reshape(b * t, d)
                    if self.sites.layers[layer].mlp_shared_norm is not None:
                        self._stats[layer] = (r, n)

        return hook

    def _on_projection(self, layer: int, j: int, const: _ProjectionGrad):
        lo = layer * self.cfg.layer_width + const.start
        hi = lo + const.n
        b, t = self.acc.shape[1], self.acc.shape[2]
        bt = b * t

        def on_grad(g: torch.Tensor, out: torch.Tensor) -> None:
            with torch.no_grad():
                copies = g.shape[0] // b
                gv = g.reshape(copies * bt, const.n, -1).to(self.acc.dtype)
                qv = out.reshape(copies * bt, const.n, -1).to(self.acc.dtype)
                if const.order is not None:
                    gv, qv = gv[:, const.order], qv[:, const.order]
                d = const.weight.shape[-1]
                r = self._r[layer]
                rg = wide(gv) if r is None else wide(gv) * r
                rg = rg.view(copies, bt, const.n, -1).sum(0).transpose(0, 1)  # [n, BT, dh]
                if (layer, j) in self._rg:
                    self._rg[(layer, j)] += rg
                else:
                    self._rg[(layer, j)] = rg.contiguous()
                if r is None:  # no pre-norm: the first term is the whole gradient
                    return
                s = (gv * (qv - const.bias)).sum(-1).T.div_(-d)  # [n, k*BT], negated
                target = self.acc[lo:hi].view(const.n, bt, d)
                rn = self._rn[layer]
                for c in range(copies):
                    s_c, rn_c = s[:, c * bt : (c + 1) * bt, None], rn[c * bt : (c + 1) * bt]
                    if self.written[lo]:
                        target.addcmul_(s_c, rn_c)
                    else:
                        torch.mul(s_c, rn_c, out=target)
                        self.written[lo:hi] = True

        def hook(module, args, out):
            if out.requires_grad:
                saved = out.detach()
                out.register_hook(lambda g: on_grad(g, saved))

        return hook

    def _alias(self, column: int, shared: int | None = None):
        """Gradient of the hooked module's input; ``shared``: that input is layer ``shared``'s attention pre-norm
        output (GPT-J's MLP), so the gradient is taken back through that norm by hand."""
        b = self.acc.shape[1]

        def on_grad(g: torch.Tensor) -> None:
            g = g.detach()
            if shared is not None:
                r, n = self._stats[shared]
                g = norm_backward(g, r, n, self.sites.layers[shared].attn_gain, self.sites.norm_kind)
            if g.shape[0] != b:  # stacked copies of the batch
                g = g.reshape(-1, *self.acc.shape[1:]).sum(0)
            if self.written[column]:
                self.acc[column] += g
            else:
                self.acc[column].copy_(g)
                self.written[column] = True

        def hook(module, args):
            x = args[0]
            if not x.requires_grad:
                return None
            alias = x.view_as(x)
            alias.register_hook(on_grad)
            return (alias, *args[1:])

        return hook


# ---- patching (evaluation and exact attribution) -------------------------------------------------------
