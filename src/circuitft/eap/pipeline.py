"""The circuit pipeline: attribute, select, evaluate (own and held-out rows), summarise, in one function.

:func:`find_circuit` takes a model, its task pairs and the :class:`~circuitft.eap.settings.CircuitSettings`
and returns a :class:`CircuitResult`: the graph (every edge's score, ``in_graph`` the circuit), its
evaluation on the pairs, and its summary (the keys of ``circuitft circuit``'s ``metrics.json``: faithfulness,
accuracies, sizes, held-out scores, random baseline, size curve, the readings). Every place that finds a
circuit calls it or builds on its pieces:

- ``circuitft circuit`` (:mod:`circuitft.commands.circuit`) and the Python API (:mod:`circuitft.api`) call
  :func:`find_circuit` (the API's ``evaluate_circuit`` calls :func:`evaluate_circuit`, its second half);
- the CircuitLoRA probe calls :func:`find_circuit` without evaluation (``evaluate=False``);
- the CircuitCallback's multi-task engine (:mod:`circuitft.callbacks.engine`) shards attribution and
  evaluation over the ranks of a DDP run and evaluates many circuits per batch across tasks, so it uses the
  pieces: :func:`select_circuit`, :func:`circuit_scores` and the one evaluation loop
  (:func:`circuitft.eap.evaluate.evaluate_circuits`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

import circuitft.eap.evaluate as evaluation
from circuitft.data.pairs import PromptPairs
from circuitft.eap.attribute import attribute
from circuitft.eap.baseline import evaluate_references, selection_option, selection_size
from circuitft.eap.evaluate import EvalResult, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.heldout import heldout_scores
from circuitft.eap.mib import at_fractions, mib_areas
from circuitft.eap.progress import Progress
from circuitft.eap.select import nodes_with_in_and_out, select, select_default
from circuitft.eap.settings import CircuitSettings
from circuitft.eap.summary import smallest_reaching


@dataclass
class CircuitResult:
    """What :func:`find_circuit` found: the circuit, its evaluation and its summary."""

    graph: Graph  # every edge's score; ``in_graph`` marks the circuit
    evaluation: EvalResult | None = None  # per-row results on the pairs (None: not evaluated)
    metrics: dict[str, Any] = field(default_factory=dict)  # the summary (JSON-ready; empty: not evaluated)
    note: str | None = None  # the one-line note of a default circuit widened on a small graph
    scores: dict[str, float] = field(
        default_factory=dict
    )  # circuit_scores of the evaluation (floats, NaN kept)
    heldout: dict[str, float] | None = (
        None  # the ``*_heldout`` keys (floats, NaN kept; None: no held-out rows)
    )
    seconds_references: float = 0.0  # time spent on the random baseline and the size curve


def attribute_graph(
    model: torch.nn.Module, pairs: PromptPairs, settings: CircuitSettings, progress: Progress = False
) -> Graph:
    """Every edge's score on ``pairs`` (:func:`circuitft.eap.attribute.attribute` with the settings)."""
    return attribute(
        model,
        Graph.from_model(model),
        pairs,
        method=settings.attribution_method,
        metric=settings.metric,
        ig_steps=settings.ig_steps,
        batch_size=settings.batch_size,
        progress=progress,
        dtype=settings.dtype,
    )


def select_circuit(graph: Graph, settings: CircuitSettings) -> str | None:
    """Select the circuit the settings ask for; without a size option the default (top 5%, pruned; on a graph
    too small for any of them to survive, the smallest connected top-n, returned as a one-line note)."""
    if settings.resize:
        select(graph, **settings.sizes)
        return None
    return select_default(graph)


def use_saved_circuit(graph: Graph, settings: CircuitSettings) -> None:
    """A saved graph's circuit: reselected from its scores when a size option is given, else used as it is
    (an empty one stays empty; its nodes follow from its edges)."""
    if settings.resize:
        select(graph, **settings.sizes)
        return
    graph.in_graph &= graph.cfg.real_edge_mask
    graph.nodes_in_graph = nodes_with_in_and_out(graph.cfg, graph.in_graph)


def circuit_scores(result: EvalResult, graph: Graph) -> dict[str, float]:
    """Faithfulness (both definitions), metric gap, accuracies, and the circuit's edge and node counts (nodes
    without logits, as the reference counts)."""
    return {
        **faithfulness(result),
        "n_edges": float(graph.count_edges()),
        "n_nodes": float(graph.count_nodes()),
    }


def find_circuit(
    model: torch.nn.Module,
    pairs: PromptPairs,
    settings: CircuitSettings,
    *,
    heldout: PromptPairs | None = None,
    saved: Graph | None = None,
    evaluate: bool = True,
    progress: Progress = False,
) -> CircuitResult:
    """Attribute (or take the ``saved`` graph), select, then (``evaluate``) evaluate and summarise.

    ``heldout``: rows disjoint from ``pairs`` the circuit is also scored on (``*_heldout`` keys; an empty set
    gives them as NaN with ``n_examples_heldout`` 0; None: no such keys)."""
    if saved is not None:  # checked against the model by the caller (check_compatible, naming its file)
        graph, note = saved, None
        use_saved_circuit(graph, settings)
    else:
        graph = attribute_graph(model, pairs, settings, progress)
        note = select_circuit(graph, settings)
    if not evaluate:
        return CircuitResult(graph, note=note)
    if note is not None:  # the default circuit, widened: the top n it took
        chosen: tuple[str, float] | None = ("top_n", graph.meta["selection"]["value"])
    else:
        chosen = selection_option(graph, settings.sizes if saved is None or settings.resize else None)
    result = evaluate_circuit(
        model, graph, pairs, settings, heldout=heldout, chosen=chosen, progress=progress
    )
    result.note = note
    return result


def evaluate_circuit(
    model: torch.nn.Module,
    graph: Graph,
    pairs: PromptPairs,
    settings: CircuitSettings,
    *,
    heldout: PromptPairs | None = None,
    chosen: tuple[str, float] | None = None,
    progress: Progress = False,
) -> CircuitResult:
    """Evaluate ``graph``'s circuit on ``pairs`` (and ``heldout``), with the random baseline and the size
    curve the settings ask for, and summarise (see :func:`summarise`). ``chosen``: the selection
    ``(option, value)`` the circuit came from (the random circuits' size; None: the circuit's own size)."""
    options: dict[str, Any] = {
        "metric": settings.metric,
        "batch_size": settings.batch_size,
        "dtype": settings.dtype,
        "accuracy": settings.accuracy,
    }
    main = evaluation.evaluate(model, graph, pairs, progress=progress, **options)
    held = None
    if heldout is not None:
        rows = (
            evaluation.evaluate(model, graph, heldout, progress=progress, **options) if len(heldout) else None
        )
        held = heldout_scores(rows, settings.metric)
    t0 = time.perf_counter()
    baseline, curve = None, None
    if settings.baseline_samples or settings.curve:
        baseline, curve = evaluate_references(
            model,
            graph,
            pairs,
            n_requested=selection_size(graph, dict([chosen]) if chosen else None),
            n_random=settings.baseline_samples,
            sizes=settings.curve,
            seed=settings.seed,
            main=main,
            one_side=settings.one_sided and chosen is not None and chosen[0] in ("top_n", "top_frac"),
            progress=progress,
            **options,
        )
    seconds = time.perf_counter() - t0
    metrics = summarise(graph, main, pairs, settings, held, baseline, curve)
    scores = circuit_scores(main, graph)
    return CircuitResult(graph, main, metrics, seconds_references=seconds, scores=scores, heldout=held)


def summarise(
    graph: Graph,
    main: EvalResult,
    pairs: PromptPairs,
    settings: CircuitSettings,
    held: dict[str, float] | None = None,
    baseline: dict[str, Any] | None = None,
    curve: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The summary of a circuit (JSON-ready: NaN/inf as None): its scores, sizes, selection, the settings it
    was found and scored with, held-out scores, random baseline, size curve with the smallest circuit
    reaching 0.8 and MIB's areas. The caller adds its own keys (task, model, ...), then the readings
    (:func:`circuitft.eap.summary.add_readings`: definitions, plain-language summary, warnings)."""
    metrics: dict[str, Any] = {
        **{k: plain(v) for k, v in faithfulness(main).items()},
        "n_edges": graph.count_edges(),
        "n_nodes": graph.count_nodes(),
        "n_edges_total": graph.n_edges,
        "selection": graph.meta.get("selection"),
        "method": settings.method or graph.meta.get("method"),
        "metric": settings.metric,
        "accuracy": settings.accuracy,
        "ig_steps": graph.meta.get("ig_steps")  # a saved graph's own (no method given)
        if settings.method is None
        else (settings.ig_steps if settings.uses_ig_steps else None),
        "step_convention": graph.meta.get("step_convention"),
        "kl_reduction": graph.meta.get("kl_reduction"),
        "n_examples": len(pairs),
    }
    if held is not None:
        metrics.update({k: plain(v) for k, v in held.items() if k != "n_examples_heldout"})
        metrics["n_examples_heldout"] = int(held["n_examples_heldout"])
    metrics.update(
        n_dropped=pairs.n_dropped,
        n_identical=pairs.n_identical,
        seed=settings.seed,
        dtype=settings.dtype or "float32",
    )
    if baseline is not None:
        metrics["random_baseline"] = baseline
    if curve is not None:
        metrics.update(size_curve=curve, smallest_80pct=smallest_reaching(curve))
        points = {p["frac"]: p["faithfulness"] for p in curve if not p.get("main")}
        metrics.update({k: plain(v) for k, v in mib_areas(at_fractions(points, graph.n_edges)).items()})
    return metrics


def plain(value: Any) -> Any:
    """A JSON-safe scalar: tensors to Python numbers, NaN/inf to None (strict JSON has neither)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value + 0.0 if isinstance(value, float) else value  # -0.0 -> 0.0


__all__ = [
    "CircuitResult",
    "attribute_graph",
    "circuit_scores",
    "evaluate_circuit",
    "find_circuit",
    "plain",
    "select_circuit",
    "summarise",
    "use_saved_circuit",
]
