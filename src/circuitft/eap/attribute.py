"""Edge attribution: EAP, EAP-IG (inputs / activations), clean-corrupted, and exact patching.

Every gradient method computes, per edge u -> v,

    s(u -> v) = mean over examples of  sum_{positions, d}  dz_u . g_v,

with dz_u = z_u(corrupted) - z_u(clean) from two no-grad runs and g_v the gradient of the loss (see
:mod:`circuitft.eap.metrics`) w.r.t. destination v's input, averaged over the method's gradient passes.
Scores are in the units of ``exact`` (the loss change when that edge alone carries the corrupted
activation). The reference library divides by N but also uses batch-mean metrics, which adds a constant
1/B; here per-example losses are summed inside a batch, so the scores are a plain mean over examples.

Destination gradients are summed over all passes of a batch and contracted with dz once per batch and
layer (dz does not change between passes), so m IG steps cost m forward/backward passes plus one
contraction. The m passes of a batch run stacked as one batch of m x B rows (``steps_per_pass``), and the
pass on the corrupted input (IG step k = 0, or clean-corrupted's second point) also records the corrupted
source outputs, so a batch needs a single no-grad forward (the clean one) besides its gradient passes.
"""

from __future__ import annotations

import torch

from circuitft.data.pairs import PairBatch, PromptPairs
from circuitft.dtypes import dtype_name
from circuitft.eap.forward import (
    analysis_mode,
    buffer_dtype,
    kept_logits,
    length_batches,
    model_device,
    repeated_index,
)
from circuitft.eap.gradients import GradCollector
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.metrics import (
    LOSS_SIGN,
    AnswerIndex,
    check_metric,
    metric_loss,
    metric_values,
    validate_pairs,
    wide,
)
from circuitft.eap.patching import Handles, Patcher, capture_sources, hooked
from circuitft.eap.progress import Counter, Progress
from circuitft.eap.settings import METHODS as METHODS  # re-exported
from circuitft.eap.settings import check_method as check_method
from circuitft.eap.sites import ModelSites, check_graph, model_sites
from circuitft.errors import ConfigError


class BatchRuns:
    """The no-grad runs of a batch: source differences, clean log-probs, clean/corrupted embeddings.

    The clean run records every source's output into ``delta``. The corrupted run then turns it into
    corrupted - clean: either a no-grad run here (``corrupted_run=True``) or, to save that forward, the first
    gradient pass whose first rows run the corrupted embeddings (:meth:`corrupted_hooks`).
    """

    def __init__(
        self,
        model,
        sites: ModelSites,
        cfg: GraphConfig,
        batch: PairBatch,
        metric: str,
        dtype,
        corrupted_run: bool = True,
    ) -> None:
        self.batch, self.metric, self.sites, self.cfg = batch, metric, sites, cfg
        self.index = AnswerIndex.from_batch(batch, metric)
        self.mask = batch.attention_mask
        b, t = batch.clean_ids.shape
        self.delta = torch.empty(
            cfg.n_forward, b, t, cfg.d_model or sites.d_model, dtype=dtype, device=self.mask.device
        )
        with torch.no_grad():
            with hooked(capture_sources(sites, cfg, self.delta, "set")):
                clean = kept_logits(model, self.index, input_ids=batch.clean_ids, attention_mask=self.mask)
            self.clean_logp = torch.log_softmax(wide(clean), -1)
            self.clean_embeds = sites.embed(batch.clean_ids)
            self.corrupted_embeds = sites.embed(batch.corrupted_ids)
            self.complete = corrupted_run
            if corrupted_run:
                with hooked(capture_sources(sites, cfg, self.delta, "rsub")):
                    kept_logits(model, self.index, input_ids=batch.corrupted_ids, attention_mask=self.mask)

    def corrupted_hooks(self) -> Handles:
        """Hooks completing ``delta`` from a pass on ``inputs_embeds`` whose first B rows are the corrupted
        embeddings (the input source is set here: an embeddings pass never calls the embedding module)."""
        self.delta[0].copy_(self.corrupted_embeds - self.clean_embeds)
        self.complete = True
        return capture_sources(
            self.sites, self.cfg, self.delta, "rsub", rows=self.delta.shape[1], embed=False
        )

    def loss(self, model, embeds: torch.Tensor) -> torch.Tensor:
        """Summed per-example loss of a run on ``embeds`` [k*B, T, d] (k stacked copies of the batch; clean
        attention mask, clean logits as reference)."""
        k = embeds.shape[0] // self.mask.shape[0]
        index, clean_logp = repeated_index(self.index, k), self.clean_logp
        if k > 1:
            clean_logp = clean_logp.repeat(k, 1)
        mask = self.mask.repeat(k, 1) if k > 1 else self.mask
        logits = kept_logits(model, index, inputs_embeds=embeds, attention_mask=mask)
        return metric_loss(self.metric, logits, index, clean_logp)


def _grad_pass(model, runs: BatchRuns, embeds: torch.Tensor, hooks: Handles | None = None) -> None:
    with torch.enable_grad():  # callers may hold torch.no_grad(); attribute() also leaves inference mode
        embeds = embeds.detach().requires_grad_(True)
        with hooked(hooks or []):
            loss = runs.loss(model, embeds)
        loss.backward()


def _stacked_passes(model, runs: BatchRuns, points: list[torch.Tensor], per_pass: int | None) -> int:
    """Gradient passes at ``points`` (embeddings [B, T, d]), ``per_pass`` of them stacked into one run.

    If the corrupted sources are still missing, ``points[0]`` must be the corrupted embeddings: the first
    run then also records them (one no-grad forward saved per batch).
    """
    per_pass = per_pass or len(points)
    for start in range(0, len(points), per_pass):
        chunk = points[start : start + per_pass]
        hooks = None
        if not runs.complete:
            assert start == 0 and torch.equal(chunk[0], runs.corrupted_embeds)
            hooks = runs.corrupted_hooks()
        _grad_pass(model, runs, torch.cat(chunk) if len(chunk) > 1 else chunk[0], hooks)
    return len(points)


def _passes_inputs(model, runs: BatchRuns, method: str, steps: int, per_pass: int | None) -> int:
    e, e_corr = runs.clean_embeds, runs.corrupted_embeds
    if method == "EAP":
        return _stacked_passes(model, runs, [e], per_pass)
    if method == "clean-corrupted":
        return _stacked_passes(model, runs, [e_corr, e], per_pass)
    # EAP-IG-inputs, current library convention k = 0..m-1 (k = 0 is the corrupted input itself)
    return _stacked_passes(model, runs, [e_corr + (k / steps) * (e - e_corr) for k in range(steps)], per_pass)


def _passes_activations(model, sites: ModelSites, runs: BatchRuns, steps: int) -> int:
    """EAP-IG-activations: per sublayer S and k = 1..m, S's output = a z_S(clean) + (1-a) z_S(corrupted)."""
    batch = runs.batch
    blocks: list[torch.nn.Module] = [m for ls in sites.layers for m in (ls.attn, ls.mlp)]
    outs: dict[str, list[torch.Tensor]] = {"clean": [], "corrupted": []}

    def recorder(store: list[torch.Tensor]):
        def hook(module, args, out):
            store.append((out[0] if isinstance(out, tuple) else out).detach())

        return hook

    with torch.no_grad():
        for name, ids in (("clean", batch.clean_ids), ("corrupted", batch.corrupted_ids)):
            handles = [m.register_forward_hook(recorder(outs[name])) for m in blocks]
            with hooked(handles):
                model(input_ids=ids, attention_mask=runs.mask, logits_to_keep=1, use_cache=False)

    def replace(value: torch.Tensor):
        def hook(module, args, out):
            if isinstance(out, tuple):
                return (value, *out[1:])
            return value

        return hook

    n = 0
    for k in range(1, steps + 1):
        a = k / steps
        _grad_pass(model, runs, a * runs.clean_embeds + (1 - a) * runs.corrupted_embeds)
        n += 1
    for i, module in enumerate(blocks):
        for k in range(1, steps + 1):
            a = k / steps
            value = (a * outs["clean"][i] + (1 - a) * outs["corrupted"][i]).requires_grad_(True)
            with hooked([module.register_forward_hook(replace(value))]):
                _grad_pass(model, runs, runs.clean_embeds)
            n += 1
    return n


def _contract(scores: torch.Tensor, cfg: GraphConfig, delta: torch.Tensor, acc: torch.Tensor) -> None:
    """scores[u, v] += sum_{b,t,d} delta[u] * acc[v] for every edge u -> v (and some non-edges, masked later).

    Layers are taken in groups of about sqrt(L): one matrix product per group over the rows upstream of the
    group's last MLP, so delta is read a few times instead of once per layer.
    """
    d_flat = delta.reshape(delta.shape[0], -1)
    a_flat = acc.reshape(acc.shape[0], -1)
    w, n_layers = cfg.layer_width, cfg.n_layers
    step = max(1, round(n_layers**0.5))
    for first in range(0, n_layers, step):
        last = min(n_layers, first + step)
        rows = cfg.mlp_prev(last - 1) if last < n_layers else cfg.n_forward
        cols = slice(first * w, last * w + (1 if last == n_layers else 0))
        scores[:rows, cols] += (d_flat[:rows] @ a_flat[cols].T).to(scores)


def _exact(
    model,
    sites: ModelSites,
    cfg: GraphConfig,
    pairs: PromptPairs,
    metric: str,
    batch_size: int,
    progress: Progress,
    dtype,
) -> torch.Tensor:
    """s(e) = mean loss with edge e alone corrupted - mean clean loss, one patched run per edge and batch."""
    edges = cfg.real_edge_mask.nonzero().tolist()
    totals = torch.zeros(len(edges), dtype=torch.float64)
    device = model_device(model)
    n_total = 0
    bar = Counter(len(edges) * ((len(pairs) + batch_size - 1) // batch_size), progress, "exact")
    for _, batch in length_batches(pairs, batch_size):
        batch = batch.to(device)
        index = AnswerIndex.from_batch(batch, metric)
        b, t = batch.clean_ids.shape
        corrupted = torch.empty(cfg.n_forward, b, t, sites.d_model, dtype=dtype, device=device)
        with torch.no_grad():
            resid: dict = {}
            with hooked(capture_sources(sites, cfg, corrupted, "set", resid)):
                kept_logits(model, index, input_ids=batch.corrupted_ids, attention_mask=batch.attention_mask)
            clean_logits = kept_logits(
                model, index, input_ids=batch.clean_ids, attention_mask=batch.attention_mask
            )
            clean_logp = torch.log_softmax(wide(clean_logits), -1)
            base = metric_values(metric, clean_logits, index, clean_logp).sum().item()
            notin = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.bool)
            for i, (u, v) in enumerate(edges):
                notin[u, v] = True
                patcher = Patcher(sites, cfg, notin, corrupted.clone(), resid)
                with hooked(patcher.hooks()):
                    logits = kept_logits(
                        model, index, input_ids=batch.clean_ids, attention_mask=batch.attention_mask
                    )
                notin[u, v] = False
                totals[i] += metric_values(metric, logits, index, clean_logp).sum().item() - base
                bar.update(1)
        n_total += b
    bar.close()
    scores = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.float32)
    rows, cols = torch.tensor(edges).T
    scores[rows, cols] = (LOSS_SIGN[metric] * totals / n_total).float()
    return scores


def attribute(
    model: torch.nn.Module,
    graph: Graph,
    pairs: PromptPairs,
    *,
    method: str = "EAP-IG-inputs",
    metric: str = "kl",
    ig_steps: int = 5,
    batch_size: int = 8,
    progress: Progress = True,
    dtype: torch.dtype | str | None = None,
    steps_per_pass: int | None = None,
) -> Graph:
    """Fill ``graph.scores`` (float32, mean over examples) and ``graph.meta``; returns ``graph``.

    ``model`` is a plain Hugging Face causal LM (merged, frozen or not: parameters get no gradients here and
    the model is restored afterwards). See the module docstring for the score definition.
    ``progress``: a tqdm bar (True), none (False) or a ``(done, total)`` hook called after each batch.
    ``steps_per_pass``: gradient passes of a batch stacked into one forward/backward (None: all of them;
    ``ig_steps`` x ``batch_size`` rows at once; lower it to cap activation memory).
    """
    check_method(method)
    check_metric(metric)
    if ig_steps < 1 and method in ("EAP-IG-inputs", "EAP-IG-activations"):
        raise ConfigError(f"ig_steps must be at least 1, got {ig_steps}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if steps_per_pass is not None and steps_per_pass < 1:
        raise ConfigError(f"steps_per_pass must be positive, got {steps_per_pass}")
    validate_pairs(pairs, metric)
    sites = model_sites(model)
    cfg = graph.cfg
    check_graph(sites, cfg)
    device = model_device(model)
    dtype = buffer_dtype(model, dtype)
    n_batches = (len(pairs) + batch_size - 1) // batch_size
    with analysis_mode(model), torch.inference_mode(False):
        if method == "exact":
            scores = _exact(model, sites, cfg, pairs, metric, batch_size, progress, dtype)
            passes = 0
        else:
            scores = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.float64)
            passes = 0
            batches = length_batches(pairs, batch_size)
            bar = Counter(n_batches, progress, method)
            for _, batch in batches:
                # the corrupted sources come from a gradient pass on the corrupted input where there is one
                own_run = method in ("EAP", "EAP-IG-activations")
                runs = BatchRuns(model, sites, cfg, batch.to(device), metric, dtype, corrupted_run=own_run)
                acc = torch.empty(cfg.n_backward, *runs.delta.shape[1:], dtype=dtype, device=device)
                collector = GradCollector(sites, cfg, acc)
                with hooked(collector.hooks()):
                    if method == "EAP-IG-activations":
                        passes = _passes_activations(model, sites, runs, ig_steps)
                    else:
                        passes = _passes_inputs(model, runs, method, ig_steps, steps_per_pass)
                _contract(scores, cfg, runs.delta, collector.finish())
                del runs, acc
                bar.update()
            bar.close()
            scores /= len(pairs) * passes
    graph.scores = (scores * cfg.real_edge_mask).float()
    graph.meta.update(
        method=method,
        metric=metric,
        ig_steps=ig_steps if method in ("EAP-IG-inputs", "EAP-IG-activations") else None,
        step_convention=_STEPS.get(method),
        kl_reduction="sum over vocabulary" if metric == "kl" else None,
        loss_sign="+kl" if metric == "kl" else f"-{metric}",
        normalisation="mean over examples of the per-example attribution (no extra 1/batch_size)",
        passes_per_batch=passes,
        n_examples=len(pairs),
        batch_size=batch_size,
        buffer_dtype=dtype_name(dtype),
        task=pairs.task,
        model=str(getattr(model.config, "name_or_path", "") or type(model).__name__),
    )
    return graph


_STEPS: dict[str, str] = {
    "EAP-IG-inputs": "k=0..m-1: embeddings e' + (k/m)(e - e') (current library)",
    "EAP-IG-activations": "k=1..m per sublayer: a z(x) + (1-a) z(x'), a = k/m",
    "EAP": "gradient at the clean input",
    "clean-corrupted": "mean of gradients at the clean and corrupted inputs",
    "exact": "one patched run per edge",
}
