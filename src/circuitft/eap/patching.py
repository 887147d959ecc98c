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

import warnings
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
    mode: Literal["set", "sub", "rsub"],
    resid: dict[tuple[str, int], torch.Tensor] | None = None,
    rows: int | None = None,
    embed: bool = True,
) -> Handles:
    """Forward hooks writing each source's output into ``delta``: ``set`` (delta = out), ``sub``
    (delta -= out) or ``rsub`` (delta = out - delta).

    Head writes go straight into ``delta`` with one batched matmul per layer (``bmm`` / ``baddbmm_``); behind a
    post-attention norm they are scaled into their shares of its output once it runs (see :mod:`.sites`).
    ``rows``: record only the first ``rows`` rows of the batch (a run of stacked copies); ``embed=False``
    leaves the input source alone (a run on ``inputs_embeds`` never calls the embedding module).
    With ``resid``, the residual read by every destination (the inputs of the attention, MLP and final
    norms) is also recorded, keyed ``("attn", l)``, ``("mlp", l)``, ``("final", 0)`` (see :class:`Patcher`).
    """
    dtype = delta.dtype
    beta = {"set": 0.0, "sub": 1.0, "rsub": -1.0}[mode]
    alpha = -1.0 if mode == "sub" else 1.0

    def put(index: int, value: torch.Tensor) -> None:
        value = value.detach()[:rows]
        if mode == "set":
            delta[index].copy_(value)
        elif mode == "sub":
            delta[index].sub_(value.to(dtype))
        else:
            delta[index].neg_().add_(value.to(dtype))

    handles: Handles = []
    if embed:
        handles.append(sites.embed.register_forward_hook(lambda m, a, out: put(0, out)))
    h, dh = sites.n_heads, sites.head_dim
    for layer, ls in enumerate(sites.layers):
        first = cfg.head_index(layer, 0)
        weight = ls.out_weight.to(dtype)
        pending: list[torch.Tensor] = []  # head writes waiting for the post-attention norm's scale

        def on_z(module, args, first=first, weight=weight, post=ls.post_attn_norm, pending=pending):
            z = args[0].detach()[:rows]
            b, t, _ = z.shape
            zt = z.reshape(b * t, h, dh).transpose(0, 1).to(dtype)  # [H, BT, dh]
            target = delta[first : first + h].view(h, b * t, -1)
            if mode == "set":
                torch.bmm(zt, weight, out=target)
            elif post is not None:
                pending[:] = [torch.bmm(zt, weight)]
            else:
                target.baddbmm_(zt, weight, beta=beta, alpha=alpha)

        def on_post(module, args, first=first, ls=ls, pending=pending):
            out = args[0].detach()[:rows]
            b, t, _ = out.shape
            scale = ls.post_attn_scale(out).to(dtype).view(1, b * t, -1)
            target = delta[first : first + h].view(h, b * t, -1)
            if mode == "set":
                target.mul_(scale)
            elif mode == "sub":
                target.addcmul_(pending.pop(), scale, value=-1)
            else:
                target.neg_().addcmul_(pending.pop(), scale)

        def on_mlp(module, args, out, index=cfg.mlp_index(layer)):
            put(index, out)

        handles.append(ls.out_proj.register_forward_pre_hook(on_z))
        if ls.post_attn_norm is not None:
            handles.append(ls.post_attn_norm.register_forward_pre_hook(on_post))
        handles.append(ls.mlp_out.register_forward_hook(on_mlp))
    if resid is not None:

        def record(key: tuple[str, int]):
            def hook(module, args):
                resid[key] = args[0].detach()[:rows]

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
    The sums are one sparse x dense product (float32/float64: each destination reads only its own parents'
    rows, nothing is gathered), else a dense product over the rows involved.
    """

    def __init__(self, columns: torch.Tensor, key: tuple[str, int], dtype: torch.dtype) -> None:
        self.key = key
        out_rows = columns.any(1).nonzero().flatten()
        in_rows = (~columns).any(1).nonzero().flatten()
        self.complement = len(in_rows) < len(out_rows)
        rows = in_rows if self.complement else out_rows
        block = ~columns if self.complement else columns
        self.n_patterns = columns.shape[1]
        self.n_rows = len(rows)
        self.sparse: torch.Tensor | None = None
        if self.n_rows and dtype in (torch.float32, torch.float64):
            hi = int(rows[-1]) + 1
            self.rows: slice | torch.Tensor = slice(0, hi)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self.weights = block[:hi].T.to(dtype).to_sparse_csr()  # [U, hi]
            return
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        self.rows = slice(lo, hi)
        if 2 * len(rows) < hi - lo:  # sparse rows: gather them; else read the range in place (zero weights)
            self.rows = rows
            self.weights = block[rows].T.to(dtype)  # [U, r]
        else:
            self.weights = block[lo:hi].T.to(dtype)

    def __call__(self, x: torch.Tensor, delta: torch.Tensor, resid: dict) -> torch.Tensor:
        """[U, B, T, d] patched inputs given the current residual x [B, T, d]."""
        u = self.n_patterns
        start = resid[self.key][None] if self.complement else x[None]
        if not self.n_rows:
            return start.expand(u, *x.shape).to(x.dtype)
        rows = delta[self.rows] if isinstance(self.rows, slice) else delta.index_select(0, self.rows)
        part = (self.weights @ rows.reshape(rows.shape[0], -1)).reshape(u, *x.shape)
        return (start - part if self.complement else start + part).to(x.dtype)


class _ProjectionPatch:
    """Which output chunks of a q/k/v projection take which patched input (group -1: unpatched).

    During the patched run the projection's forward is replaced: each group's chunks are computed once from
    that group's normed input, so no chunk is computed twice.
    """

    def __init__(self, proj: Projection, group_of_slot: dict[int, int], dtype: torch.dtype) -> None:
        groups = [group_of_slot.get(s, -1) for s in proj.slots.tolist()]
        self.groups: list[tuple[int, list[int] | slice, torch.Tensor, torch.Tensor | None]] = []
        dh = proj.weight.shape[1]
        for g in sorted(set(groups)):
            chunks = [j for j, gg in enumerate(groups) if gg == g]
            weight = proj.weight[chunks].reshape(len(chunks) * dh, -1).T.to(dtype).contiguous()  # [d, m*dh]
            bias = None if proj.bias is None else proj.bias[chunks].reshape(-1).to(dtype)
            self.groups.append((g, _as_slice(chunks), weight, bias))
        self.dh, self.n_chunks = dh, len(groups)


class _Forward:
    """A temporary replacement of a module's ``forward`` (a hook-like handle: :meth:`remove` restores it)."""

    def __init__(self, module: torch.nn.Module, forward: Any) -> None:
        self.module = module
        module.forward = forward

    def remove(self) -> None:
        """Restore the module's own forward."""
        if "forward" in vars(self.module):
            del self.module.forward


class Patcher:
    """Hooks for a patched clean run: every edge with ``notin`` True delivers its source's corrupted output.

    Before the patched run ``delta`` must hold the corrupted source outputs and ``resid`` the corrupted
    residuals (:func:`capture_sources` with ``set`` and ``resid``); during the run, source hooks subtract the
    current outputs as they are produced, and each destination input becomes x + the sum of ``delta`` over
    its parents u with ``notin[u, v]``. Destinations with the same non-circuit parents share one patched
    input; a projection's chunks are computed from ``norm(patched input)`` of their group. The plan depends
    only on ``notin``: build it once and :meth:`bind` each batch's ``delta`` and ``resid`` (one forward pass
    per binding).
    """

    def __init__(
        self,
        sites: ModelSites,
        cfg: GraphConfig,
        notin: torch.Tensor,
        delta: torch.Tensor | None = None,
        resid: dict | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.sites, self.cfg, self.delta, self.resid = sites, cfg, delta, resid
        dt = dtype or delta.dtype
        device = device or delta.device
        notin = notin.to(device) & cfg.real_edge_mask.to(device)
        self.any = bool(notin.any())
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

    def bind(self, delta: torch.Tensor, resid: dict) -> Patcher:
        """Use this batch's corrupted source outputs and residuals for the next patched run."""
        self.delta, self.resid = delta, resid
        return self

    def hooks(self) -> Handles:
        """Register the hooks (remove them with :func:`hooked`)."""
        assert self.delta is not None and self.resid is not None, "bind() a batch first"
        handles = capture_sources(self.sites, self.cfg, self.delta, "sub")
        for layer, ls in enumerate(self.sites.layers):
            if self._attn[layer] is not None:
                patched, plans = self._attn[layer]
                handles.append(ls.attn_norm.register_forward_pre_hook(self._on_attn_norm(layer, patched)))
                for proj, plan in zip(ls.projections, plans, strict=True):
                    handles.append(_Forward(proj.module, self._projection_forward(layer, plan)))
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

    def _projection_forward(self, layer: int, plan: _ProjectionPatch):
        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            b, t, _ = x.shape
            out = None
            for g, chunks, weight, bias in plan.groups:
                src = (x if g < 0 else self._normed[layer][g]).reshape(b * t, -1).to(weight.dtype)
                new = src @ weight if bias is None else torch.addmm(bias, src, weight)
                if len(plan.groups) == 1:
                    return new.view(b, t, -1)
                if out is None:
                    out = new.new_empty(b * t, plan.n_chunks, plan.dh)
                out[:, chunks] = new.view(b * t, -1, plan.dh)
            return out.view(b, t, -1)

        return forward
