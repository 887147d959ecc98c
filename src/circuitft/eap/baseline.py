"""Reference points for one circuit: random circuits of the same size and a size curve.

Both are evaluated in one pass over the rows with :func:`circuitft.eap.evaluate.evaluate_circuits` (a clean
and a corrupted run per batch, then one patched run per circuit), so k reference circuits cost about k
forward passes per batch on top of the circuit's own evaluation.

Random circuits: sample ``i`` (``i = 0 .. n - 1``) is ``torch.randperm(n_real, generator=g)[:n_edges]`` of
the real edges (in the order of ``cfg.real_edge_mask.nonzero()``), with ``g`` one generator seeded with
``seed`` drawing the samples in order; then pruned as the real selection is (``prune=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.curve import size_masks
from circuitft.eap.evaluate import EvalResult, evaluate_circuits, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.progress import Progress
from circuitft.eap.select import prune_graph
from circuitft.eap.settings import (  # re-exported: the size-curve option is declared with the settings
    DEFAULT_CURVE as DEFAULT_CURVE,
)
from circuitft.eap.settings import (
    DEFAULT_SAMPLES,
    n_from_frac,
)
from circuitft.eap.settings import one_sided as one_sided
from circuitft.eap.settings import parse_size_curve as parse_size_curve
from circuitft.eap.summary import FAITHFULNESS_TARGET


def selection_option(graph: Graph, sizes: dict[str, float | None] | None) -> tuple[str, float] | None:
    """``(option, value)`` of the selection: the one given in ``sizes``, else the graph's recorded one."""
    given = {k: v for k, v in (sizes or {}).items() if v is not None}
    if not given:
        sel = graph.meta.get("selection")
        if isinstance(sel, dict) and sel.get("option") in ("top_n", "top_frac", "threshold", "greedy_n"):
            given = {sel["option"]: sel["value"]}
    return next(iter(given.items())) if len(given) == 1 else None


def selection_size(graph: Graph, sizes: dict[str, float | None] | None) -> int:
    """The edges a selection picked before pruning: from ``sizes`` (the one option given), else from the
    graph's recorded selection, else the circuit's own size (a saved circuit used as it is)."""
    chosen = selection_option(graph, sizes)
    return graph.count_edges() if chosen is None else requested_edges(graph, *chosen)


def requested_edges(graph: Graph, option: str, value: float) -> int:
    """How many edges a selection ``{option: value}`` picked before pruning (``graph`` holds the scores)."""
    if option in ("top_n", "greedy_n"):
        return int(value)
    if option == "top_frac":
        return n_from_frac(float(value), graph.n_edges)
    if option == "threshold":
        real = graph.cfg.real_edge_mask
        return int((graph.scores.detach().cpu().abs()[real] >= float(value)).sum())
    raise ValueError(f"unknown selection option {option!r}")


def random_masks(
    graph: Graph, n_edges: int, n_samples: int, seed: int, prune: bool = True
) -> list[torch.Tensor]:
    """``n_samples`` edge masks of ``n_edges`` uniformly drawn real edges each (see module docstring).

    ``graph`` gives the edge layout only and is left as it was."""
    real = graph.cfg.real_edge_mask
    index = real.flatten().nonzero().flatten()
    n_edges = max(0, min(int(n_edges), len(index)))
    g = torch.Generator().manual_seed(int(seed))
    saved = graph.in_graph.clone(), graph.nodes_in_graph.clone()
    masks = []
    try:
        for _ in range(n_samples):
            flat = torch.zeros(real.numel(), dtype=torch.bool)
            flat[index[torch.randperm(len(index), generator=g)[:n_edges]]] = True
            graph.in_graph = flat.view_as(real)
            if prune:
                prune_graph(graph)
            masks.append(graph.in_graph.clone())
    finally:
        graph.in_graph, graph.nodes_in_graph = saved
    return masks


def evaluate_references(
    model: torch.nn.Module,
    graph: Graph,
    pairs: PromptPairs,
    *,
    n_requested: int,
    n_random: int = DEFAULT_SAMPLES,
    sizes: Sequence[float] = (),
    seed: int = 0,
    metric: str = "kl",
    batch_size: int = 8,
    dtype: torch.dtype | str | None = None,
    accuracy: str = "exact_match",
    main: EvalResult | None = None,
    one_side: bool = False,
    progress: Progress = False,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """``(random_baseline, size_curve)`` for the circuit of ``graph`` (None for each part not asked for).

    ``n_requested``: the edges the real selection picked before pruning (the random circuits' size);
    ``sizes``: fractions of the edges for the size curve (top fraction by |score|, pruned); ``main``: the
    evaluation of ``graph``'s own circuit on ``pairs``, reused for a circuit equal to it (e.g. the curve's
    point at the selection's own fraction). Each distinct circuit is evaluated once.

    ``one_side`` (with ``main``, whose circuit must be the top ``n_requested`` edges by |score|): the curve
    gets the main circuit as a point (``"main": true``) and only the fractions on one side of it: smaller
    ones when its faithfulness reaches 0.8, larger ones otherwise (half the cost; the smallest circuit
    reaching 0.8 is the same unless the curve is not monotone).

    ``progress``: a bar of its own (True), none, or a ``(done, total)`` hook (:mod:`circuitft.eap.progress`)."""
    randoms = random_masks(graph, n_requested, n_random, seed) if n_random > 0 else []
    counts = {}  # one circuit per distinct requested size (small graphs map several fractions to one n)
    for f in sorted(sizes):
        counts.setdefault(max(1, int(f * graph.n_edges)), f)
    main_point = None
    if one_side and main is not None and counts:
        scores = faithfulness(main)
        reached = math.isfinite(scores["faithfulness"]) and scores["faithfulness"] >= FAITHFULNESS_TARGET
        counts = {n: f for n, f in counts.items() if (n < n_requested if reached else n > n_requested)}
        main_point = {"frac": n_requested / graph.n_edges, "n_edges": main.n_edges, "faithfulness":
                      _plain(scores["faithfulness"]), "circuit_accuracy": scores["circuit_accuracy"], "main": True}  # fmt: skip
    fracs = sorted(counts.values())
    curve_masks = size_masks(graph, fracs) if fracs else []
    masks = randoms + curve_masks
    if not masks and main_point is None:
        return None, None
    # each distinct circuit once; one equal to the graph's own circuit reuses ``main`` (its evaluation)
    real = graph.cfg.real_edge_mask
    key = lambda m: (m.cpu() & real).numpy().tobytes()  # noqa: E731
    known: dict[bytes, EvalResult] = {}
    if main is not None:
        known[key(graph.in_graph)] = main
    todo = list({key(m): m for m in masks if key(m) not in known}.items())
    desc = _bar_label(len(randoms), len(curve_masks), len(todo))
    done = evaluate_circuits(
        model, graph.cfg, [m for _, m in todo], pairs, metric=metric, batch_size=batch_size, dtype=dtype,
        accuracy=accuracy, progress=progress, desc=desc,
    ) if todo else []  # fmt: skip
    known.update(zip([k for k, _ in todo], done, strict=True))
    results = [known[key(m)] for m in masks]
    baseline = _baseline(results[: len(randoms)], n_requested, seed) if randoms else None
    curve = None
    if fracs or main_point:
        curve = [main_point] if main_point else []
        for f, res in zip(fracs, results[len(randoms) :], strict=True):
            point = faithfulness(res)
            curve.append(
                {"frac": f, "n_edges": res.n_edges, "faithfulness": _plain(point["faithfulness"]),
                 "circuit_accuracy": point["circuit_accuracy"]}
            )  # fmt: skip
        curve.sort(key=lambda p: p["frac"])
    return baseline, curve


def _bar_label(n_random: int, n_sizes: int, n_circuits: int) -> str:
    """``random baseline 3 + size curve 4 (7 circuits)``: what the bar of :func:`evaluate_references` runs."""
    parts = [f"random baseline {n_random}" if n_random else "", f"size curve {n_sizes}" if n_sizes else ""]
    return f"{' + '.join(p for p in parts if p)} ({n_circuits} circuits)"


def _baseline(results: Sequence[EvalResult], n_requested: int, seed: int) -> dict[str, Any]:
    values = [faithfulness(r)["faithfulness"] for r in results]
    finite = [v for v in values if math.isfinite(v)]
    t = torch.tensor(finite, dtype=torch.float64)
    std = float(t.std()) if len(finite) > 1 else 0.0
    return {
        "n_samples": len(results),
        "seed": seed,
        "n_edges_sampled": n_requested,
        "n_edges_mean": sum(r.n_edges for r in results) / len(results),
        "faithfulness_mean": float(t.mean()) + 0.0 if finite else None,  # + 0.0: no -0
        "faithfulness_std": std if finite else None,
        "faithfulness_min": min(finite) + 0.0 if finite else None,
        "faithfulness_max": max(finite) + 0.0 if finite else None,
        "faithfulness": [_plain(v) for v in values],
        "n_edges": [r.n_edges for r in results],
        "circuit_accuracy_mean": sum(float(r.circuit_correct.float().mean()) for r in results) / len(results),
    }


def _plain(value: float) -> float | None:
    return value + 0.0 if math.isfinite(value) else None


__all__ = [
    "DEFAULT_CURVE",
    "DEFAULT_SAMPLES",
    "evaluate_references",
    "one_sided",
    "parse_size_curve",
    "random_masks",
    "requested_edges",
    "selection_option",
    "selection_size",
]
