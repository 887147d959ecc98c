"""Hook machinery on a :class:`~circuitft.eap.sites.ModelSites`: source capture and patching.

Buffers are laid out source-major so that every contraction is one matrix product: ``delta``
[n_forward, B, T, d] holds source outputs (``input``, each head's own write, each MLP output). The
destination gradients of attribution are collected by :mod:`circuitft.eap.gradients`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from circuitft.eap.graph import GraphConfig
from circuitft.eap.sites import ModelSites, Projection

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
