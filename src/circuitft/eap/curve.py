"""Several circuits evaluated on one set of pairs, sharing each batch's clean and corrupted runs.

:func:`evaluate_circuits` gives exactly what :func:`circuitft.eap.evaluate.evaluate` gives for each circuit,
but per batch it runs the model clean once and corrupted once, then one patched run per circuit (the
corrupted source outputs are copied for each, since a patched run consumes them). k circuits therefore
cost 2 + k forward passes per batch instead of 3k. :func:`size_masks` makes the circuits of a size curve
(the top 0.1% ... 100% of edges by |score|) from one graph's scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.attribute import analysis_mode, buffer_dtype, kept_logits, model_device
from circuitft.eap.evaluate import EvalResult
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.metrics import (
    AnswerIndex,
    answer_exact_match,
    check_accuracy,
    kl_rows,
    metric_values,
    validate_pairs,
    wide,
)
from circuitft.eap.patching import Patcher, capture_sources, hooked
from circuitft.eap.progress import Counter, Progress
from circuitft.eap.select import apply_topn
from circuitft.eap.sites import check_graph, model_sites
from circuitft.errors import ConfigError

SIZES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def check_sizes(sizes: Sequence[float], where: str = "sizes") -> tuple[float, ...]:
    """``sizes`` as a sorted tuple after checking each is a number in (0, 1] (ConfigError otherwise)."""
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
            raise ConfigError(f"{where}: each size is a fraction of the edges in (0, 1], got {s!r}")
        out.append(float(s))
    if not out:
        raise ConfigError(f"{where}: give at least one size (or turn the size curve off)")
    return tuple(sorted(set(out)))


def size_masks(graph: Graph, sizes: Sequence[float], prune: bool = True) -> list[torch.Tensor]:
    """For each fraction f of ``sizes``: the circuit of the ``max(1, int(f * n_edges))`` best edges by
    |score| (pruned like the main circuit), as an edge mask. ``graph`` is left as it was."""
    saved = graph.in_graph.clone(), graph.nodes_in_graph.clone()
    masks = []
    try:
        for f in sizes:
            apply_topn(graph, max(1, int(f * graph.n_edges)), prune=prune)
            masks.append(graph.in_graph.clone())
    finally:
        graph.in_graph, graph.nodes_in_graph = saved
    return masks


def evaluate_circuits(
    model: torch.nn.Module,
    cfg: GraphConfig,
    circuits: Sequence[torch.Tensor],
    pairs: PromptPairs,
    *,
    metric: str = "kl",
    batch_size: int = 8,
    dtype: torch.dtype | str | None = None,
    accuracy: str = "exact_match",
    progress: Progress = False,
    desc: str = "evaluate",
) -> list[EvalResult]:
    """One :class:`EvalResult` per edge mask in ``circuits`` (each [n_forward, n_backward] bool).

    ``accuracy="first_token"`` scores model and circuit accuracy on the first answer token only.
    ``progress``: a tqdm bar (True, labelled ``desc``), none (False) or a ``(done, total)`` hook called after
    each batch.
    """
    first = check_accuracy(accuracy)
    validate_pairs(pairs, metric)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    sites = model_sites(model)
    check_graph(sites, cfg)
    device = model_device(model)
    dtype = buffer_dtype(model, dtype)
    real = cfg.real_edge_mask
    notins = [(real & ~c.cpu()).to(device) for c in circuits]
    patchers = [Patcher(sites, cfg, n, dtype=dtype, device=device) for n in notins]  # plans built once
    common = {k: [] for k in ("clean", "corr", "mc", "klc")}
    per = [{k: [] for k in ("circ", "cc", "klk")} for _ in circuits]
    bar = Counter(-(-len(pairs) // batch_size), progress, desc)
    with analysis_mode(model), torch.no_grad():
        for batch in pairs.batches(batch_size):
            batch = batch.to(device)
            index = AnswerIndex.from_batch(batch, metric)
            mask = batch.attention_mask
            b, t = batch.clean_ids.shape
            clean = kept_logits(model, index, input_ids=batch.clean_ids, attention_mask=mask)
            delta = torch.empty(cfg.n_forward, b, t, sites.d_model, dtype=dtype, device=device)
            resid: dict = {}
            with hooked(capture_sources(sites, cfg, delta, "set", resid)):
                corr = kept_logits(model, index, input_ids=batch.corrupted_ids, attention_mask=mask)
            lp_clean, lp_corr = torch.log_softmax(wide(clean), -1), torch.log_softmax(wide(corr), -1)
            common["clean"].append(metric_values(metric, clean, index, lp_clean))
            common["corr"].append(metric_values(metric, corr, index, lp_clean))
            common["mc"].append(answer_exact_match(clean, index.token, index.answer_len, first))
            common["klc"].append(index.per_example_mean(kl_rows(lp_corr, lp_clean)))
            for patcher, out in zip(patchers, per, strict=True):
                work = delta.clone()  # the patched run subtracts the current outputs from its buffer
                with hooked(patcher.bind(work, resid).hooks()):
                    circ = kept_logits(model, index, input_ids=batch.clean_ids, attention_mask=mask)
                lp_circ = torch.log_softmax(wide(circ), -1)
                out["circ"].append(metric_values(metric, circ, index, lp_clean))
                out["cc"].append(answer_exact_match(circ, index.token, index.answer_len, first))
                out["klk"].append(index.per_example_mean(kl_rows(lp_corr, lp_circ)))
                del work
            bar.update()
    bar.close()
    cat = lambda xs: torch.cat(xs).cpu() if xs else torch.zeros(0)  # noqa: E731
    shared = {k: cat(v) for k, v in common.items()}
    results = []
    for c, out in zip(circuits, per, strict=True):
        results.append(
            EvalResult(
                metric,
                shared["clean"],
                shared["corr"],
                cat(out["circ"]),
                shared["mc"].bool(),
                cat(out["cc"]).bool(),
                shared["klc"],
                cat(out["klk"]),
                int((c.cpu() & real).sum()),
            )
        )
    return results
