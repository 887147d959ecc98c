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
from circuitft.eap.sites import LayerSites, ModelSites, Projection

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
    sites: ModelSites,
    cfg: GraphConfig,
    delta: torch.Tensor,
    mode: Literal["set", "sub"],
    resid: dict[tuple[str, int], torch.Tensor] | None = None,
) -> Handles:
    """Forward hooks writing (``set``) or subtracting (``sub``) each source's output into ``delta``.

    Head writes go straight into ``delta`` with one batched matmul per layer (``bmm`` / ``baddbmm_``); behind a
    post-attention norm they are scaled into their shares of its output once it runs (see :mod:`.sites`).
    With ``resid``, the residual read by every destination (the inputs of the attention, MLP and final
    norms) is also recorded, keyed ``("attn", l)``, ``("mlp", l)``, ``("final", 0)`` (see :class:`Patcher`).
    """
    dtype = delta.dtype

    def put(index: int, value: torch.Tensor) -> None:
        if mode == "set":
            delta[index].copy_(value.detach())
        else:
            delta[index].sub_(value.detach().to(dtype))

    handles: Handles = [sites.embed.register_forward_hook(lambda m, a, out: put(0, out))]
    h, dh = sites.n_heads, sites.head_dim
    for layer, ls in enumerate(sites.layers):
        first = cfg.head_index(layer, 0)
        weight = ls.out_weight.to(dtype)
        pending: list[torch.Tensor] = []  # head writes waiting for the post-attention norm's scale

        def on_z(module, args, first=first, weight=weight, post=ls.post_attn_norm, pending=pending):
            z = args[0].detach()
            b, t, _ = z.shape
            zt = z.reshape(b * t, h, dh).transpose(0, 1).to(dtype)  # [H, BT, dh]
            target = delta[first : first + h].view(h, b * t, -1)
            if mode == "set":
                torch.bmm(zt, weight, out=target)
            elif post is not None:
                pending[:] = [torch.bmm(zt, weight)]
            else:
                target.baddbmm_(zt, weight, alpha=-1)

        def on_post(module, args, first=first, ls=ls, pending=pending):
            b, t, _ = args[0].shape
            scale = ls.post_attn_scale(args[0].detach()).to(dtype).view(1, b * t, -1)
            target = delta[first : first + h].view(h, b * t, -1)
            if mode == "set":
                target.mul_(scale)
            else:
                target.addcmul_(pending.pop(), scale, value=-1)

        def on_mlp(module, args, out, index=cfg.mlp_index(layer)):
            put(index, out)

        handles.append(ls.out_proj.register_forward_pre_hook(on_z))
        if ls.post_attn_norm is not None:
            handles.append(ls.post_attn_norm.register_forward_pre_hook(on_post))
        handles.append(ls.mlp_out.register_forward_hook(on_mlp))
    if resid is not None:

        def record(key: tuple[str, int]):
            def hook(module, args):
                resid[key] = args[0].detach()

            return hook

        for layer, ls in enumerate(sites.layers):
            handles.append(ls.attn_norm.register_forward_pre_hook(record(("attn", layer))))
            handles.append(ls.mlp_resid_site.register_forward_pre_hook(record(("mlp", layer))))
        handles.append(sites.final_norm.register_forward_pre_hook(record(("final", 0))))
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

    and W(gamma n) is just the projection output minus its (effective) bias, so each projection costs one
    batched matmul into ``acc`` plus one fused elementwise update (without a pre-norm: grad = g W). The first write of a batch overwrites
    ``acc`` (no zero fill); :meth:`finish` zeroes destinations that never received a gradient.
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

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        handles: Handles = []
        cfg = self.cfg
        for layer, ls in enumerate(self.sites.layers):
            handles.append(ls.attn_norm.register_forward_pre_hook(self._save_stats(layer)))
            for proj, const in zip(ls.projections, self._proj[layer], strict=True):
                handles.append(proj.module.register_forward_hook(self._on_projection(layer, const)))
            shared = layer if ls.mlp_shared_norm is not None else None
            handles.append(
                ls.mlp_norm.register_forward_pre_hook(self._alias(cfg.mlp_in_index(layer), shared))
            )
        handles.append(self.sites.final_norm.register_forward_pre_hook(self._alias(cfg.logits_index)))
        return handles

    def finish(self) -> torch.Tensor:
        """Zero the destinations that got no gradient in any pass; returns ``acc``."""
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
                    self._r[layer] = r.to(self.acc.dtype).reshape(b * t, 1, 1)
                    self._rn[layer] = (r * n).to(self.acc.dtype).reshape(1, b * t, d)
                    if self.sites.layers[layer].mlp_shared_norm is not None:
                        self._stats[layer] = (r, n)

        return hook

    def _on_projection(self, layer: int, const: _ProjectionGrad):
        lo = layer * self.cfg.layer_width + const.start
        hi = lo + const.n

        def on_grad(g: torch.Tensor, out: torch.Tensor) -> None:
            with torch.no_grad():
                b, t, _ = g.shape
                gv = g.reshape(b * t, const.n, -1).to(self.acc.dtype)
                qv = out.reshape(b * t, const.n, -1).to(self.acc.dtype)
                if const.order is not None:
                    gv, qv = gv[:, const.order], qv[:, const.order]
                d = const.weight.shape[-1]
                r = self._r[layer]
                lhs = (gv if r is None else gv * r).transpose(0, 1)  # [n, BT, dh]
                target = self.acc[lo:hi].view(const.n, b * t, d)
                if self.written[lo]:
                    target.baddbmm_(lhs, const.weight)
                else:
                    torch.bmm(lhs, const.weight, out=target)
                    self.written[lo:hi] = True
                if r is not None:
                    s = (gv * (qv - const.bias)).sum(-1).T.div_(d)  # [n, BT]
                    target.addcmul_(s[..., None], self._rn[layer], value=-1)

        def hook(module, args, out):
            if out.requires_grad:
                saved = out.detach()
                out.register_hook(lambda g: on_grad(g, saved))

        return hook

    def _alias(self, column: int, shared: int | None = None):
        """Gradient of the hooked module's input; ``shared``: that input is layer ``shared``'s attention pre-norm
        output (GPT-J's MLP), so the gradient is taken back through that norm by hand."""

        def on_grad(g: torch.Tensor) -> None:
            g = g.detach()
            if shared is not None:
                r, n = self._stats[shared]
                g = norm_backward(g, r, n, self.sites.layers[shared].attn_gain, self.sites.norm_kind)
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
def _as_slice(index: list[int]) -> list[int] | slice:
    """``index`` as a slice when it is a contiguous increasing range (indexing by slice copies nothing)."""
    if index == list(range(index[0], index[0] + len(index))):
        return slice(index[0], index[0] + len(index))
    return index


class _PatchedInputs:
    """The patched inputs of a set of destinations that read the same residual, one per distinct column.

    ``columns`` [prev, U] bool: column u marks the non-circuit parents of destination pattern u. Patched input
    = x + sum of delta over those parents (``direct``), or, cheaper when few parents are in the circuit,
    x_corrupted - sum of delta over the circuit parents (``complement``: x_corrupted - x is the sum of all
    upstream delta, since both residuals are the sources' sum plus the same constants).
    """

    def __init__(self, columns: torch.Tensor, key: tuple[str, int], dtype: torch.dtype) -> None:
        self.key = key
        out_rows = columns.any(1).nonzero().flatten()
        in_rows = (~columns).any(1).nonzero().flatten()
        self.complement = len(in_rows) < len(out_rows)
        rows = in_rows if self.complement else out_rows
        block = ~columns if self.complement else columns
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        self.rows: slice | torch.Tensor = slice(lo, hi)
        if 2 * len(rows) < hi - lo:  # sparse rows: gather them; else read the range in place (zero weights)
            self.rows = rows
            self.weights = block[rows].T.to(dtype)  # [U, r]
        else:
            self.weights = block[lo:hi].T.to(dtype)
        self.n_rows = self.weights.shape[1]

    def __call__(self, x: torch.Tensor, delta: torch.Tensor, resid: dict) -> torch.Tensor:
        """[U, B, T, d] patched inputs given the current residual x [B, T, d]."""
        u = self.weights.shape[0]
        start = resid[self.key][None] if self.complement else x[None]
        if not self.n_rows:
            return start.expand(u, *x.shape).to(x.dtype)
        rows = delta[self.rows] if isinstance(self.rows, slice) else delta.index_select(0, self.rows)
        part = (self.weights @ rows.reshape(rows.shape[0], -1)).reshape(u, *x.shape)
        return (start - part if self.complement else start + part).to(x.dtype)


class _ProjectionPatch:
    """Which output chunks of a q/k/v projection take which patched input (group -1: unpatched)."""

    def __init__(self, proj: Projection, group_of_slot: dict[int, int], dtype: torch.dtype) -> None:
        groups = [group_of_slot.get(s, -1) for s in proj.slots.tolist()]
        counts = {g: groups.count(g) for g in set(groups)}
        # the most common input is fed to the module itself (no extra work); ties prefer leaving it alone
        self.base = max(counts, key=lambda g: (counts[g], g == -1))
        self.extra: list[tuple[int, list[int] | slice, torch.Tensor, torch.Tensor | None]] = []
        dh = proj.weight.shape[1]
        for g in sorted(counts):
            if g == self.base:
                continue
            chunks = [j for j, gg in enumerate(groups) if gg == g]
            weight = proj.weight[chunks].reshape(len(chunks) * dh, -1).T.to(dtype).contiguous()  # [d, m*dh]
            bias = None if proj.bias is None else proj.bias[chunks].reshape(-1).to(dtype)
            self.extra.append((g, _as_slice(chunks), weight, bias))
        self.dh = dh


class Patcher:
    """Hooks for a patched clean run: every edge with ``notin`` True delivers its source's corrupted output.

    Before the patched run ``delta`` must hold the corrupted source outputs and ``resid`` the corrupted
    residuals (:func:`capture_sources` with ``set`` and ``resid``); during the run, source hooks subtract the
    current outputs as they are produced, and each destination input becomes x + the sum of ``delta`` over
    its parents u with ``notin[u, v]``. Destinations with the same non-circuit parents share one patched
    input; a projection's chunks are recomputed from ``norm(patched input)`` (the most common patched input
    is fed to the projection module itself). A Patcher serves one forward pass.
    """

    def __init__(
        self, sites: ModelSites, cfg: GraphConfig, notin: torch.Tensor, delta: torch.Tensor, resid: dict
    ) -> None:
        self.sites, self.cfg, self.delta, self.resid = sites, cfg, delta, resid
        notin = notin.to(delta.device) & cfg.real_edge_mask.to(delta.device)
        self.any = bool(notin.any())
        dt = delta.dtype
        w = cfg.layer_width
        self._attn: list[tuple[_PatchedInputs, list[_ProjectionPatch]] | None] = []
        self._mlp: list[_PatchedInputs | None] = []
        for layer, ls in enumerate(sites.layers):
            block = notin[: cfg.attn_prev(layer), layer * w : layer * w + w - 1]
            slots = block.any(0).nonzero().flatten()
            if len(slots):
                columns, inverse = torch.unique(block[:, slots], dim=1, return_inverse=True)
                group_of_slot = dict(zip(slots.tolist(), inverse.tolist(), strict=True))
                plans = [_ProjectionPatch(p, group_of_slot, p.weight.dtype) for p in ls.projections]
                self._attn.append((_PatchedInputs(columns, ("attn", layer), dt), plans))
            else:
                self._attn.append(None)
            col = notin[: cfg.mlp_prev(layer), cfg.mlp_in_index(layer), None]
            self._mlp.append(_PatchedInputs(col, ("mlp", layer), dt) if col.any() else None)
        col = notin[:, cfg.logits_index, None]
        self._logits = _PatchedInputs(col, ("final", 0), dt) if col.any() else None
        self._normed: list[torch.Tensor | None] = [None] * cfg.n_layers

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        handles = capture_sources(self.sites, self.cfg, self.delta, "sub")
        for layer, ls in enumerate(self.sites.layers):
            if self._attn[layer] is not None:
                patched, plans = self._attn[layer]
                handles.append(ls.attn_norm.register_forward_pre_hook(self._on_attn_norm(layer, patched)))
                for proj, plan in zip(ls.projections, plans, strict=True):
                    handles += self._on_projection(layer, proj, plan)
            if self._mlp[layer] is not None and ls.mlp_shared_norm is not None:
                handles += self._replace_behind(ls.mlp_shared_norm, ls.mlp_norm, self._mlp[layer])
            elif self._mlp[layer] is not None:
                handles.append(ls.mlp_norm.register_forward_pre_hook(self._replace(self._mlp[layer])))
        if self._logits is not None:
            handles.append(self.sites.final_norm.register_forward_pre_hook(self._replace(self._logits)))
        return handles

    def _replace(self, patched: _PatchedInputs):
        def hook(module, args):
            return (patched(args[0], self.delta, self.resid)[0], *args[1:])

        return hook

    def _replace_behind(
        self, norm: torch.nn.Module, site: torch.nn.Module, patched: _PatchedInputs
    ) -> Handles:
        """``site`` reads ``norm``'s output (GPT-J's MLP): feed it norm(patched residual) instead."""
        now: list[torch.Tensor] = []

        def save(module, args):
            now[:] = [args[0]]

        def hook(module, args):
            return (norm.forward(patched(now.pop(), self.delta, self.resid)[0]), *args[1:])

        return [norm.register_forward_pre_hook(save), site.register_forward_pre_hook(hook)]

    def _on_attn_norm(self, layer: int, patched: _PatchedInputs):
        identity = self.sites.norm_kind == "none"  # attention reads the residual (module is a projection)

        def hook(module, args):
            x = patched(args[0], self.delta, self.resid)
            self._normed[layer] = x if identity else module.forward(x)  # [U, B, T, d]

        return hook

    def _on_projection(self, layer: int, proj: Projection, plan: _ProjectionPatch) -> Handles:
        original: list[torch.Tensor] = []

        def pre(module, args):
            original[:] = [args[0]]
            if plan.base >= 0:
                return (self._normed[layer][plan.base], *args[1:])
            return None

        def post(module, args, out):
            b, t, _ = out.shape
            view = out.view(b * t, -1, plan.dh)
            for g, chunks, weight, bias in plan.extra:
                x = original[0] if g < 0 else self._normed[layer][g]
                x = x.reshape(b * t, -1).to(out.dtype)
                new = x @ weight if bias is None else torch.addmm(bias, x, weight)
                view[:, chunks] = new.view(b * t, -1, plan.dh)
            original.clear()
            return out

        handles: Handles = [proj.module.register_forward_pre_hook(pre)]
        if plan.extra:
            handles.append(proj.module.register_forward_hook(post))
        return handles
