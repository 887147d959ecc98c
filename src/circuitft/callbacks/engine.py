"""The multi-task EAP engine the CircuitCallback drives: scores, circuits, faithfulness, size curve, cross-task.

Lightning-free: :func:`analyse` takes a (merged, frozen) model, each task's pairs and the
:class:`~circuitft.eap.settings.CircuitSettings`. It builds on the pieces of the circuit pipeline
(:mod:`circuitft.eap.pipeline`: attribution, selection, the circuit's scores) and adds what one circuit at a
time cannot do. Work is split over the
ranks of a DDP run (:class:`~circuitft.callbacks.ranks.Ranks`): each rank attributes and evaluates its own
block of every task's examples; the score sums and per-example evaluation results are gathered, so every
rank ends with the same graphs and numbers (equal to one process up to float rounding).

Per task ``b`` the evaluation runs the model clean and corrupted once per batch and patches every circuit
evaluated on ``b``'s data on top of those runs (:func:`circuitft.eap.evaluate.evaluate_circuits`): ``b``'s own
circuit, the size curve from ``b``'s scores and, for cross-task faithfulness, every other task's circuit.
A task's circuit found here equals :func:`circuitft.eap.pipeline.find_circuit`'s on the same rows and settings
(tested).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from circuitft.callbacks.ranks import AnalysisFailed, Ranks
from circuitft.data.pairs import PromptPairs
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.curve import size_masks
from circuitft.eap.evaluate import EvalResult, evaluate_circuits, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.heldout import heldout_scores, split_halves
from circuitft.eap.mib import MIB_FRACTIONS, mib_areas
from circuitft.eap.overlap import top_k_jaccard
from circuitft.eap.pipeline import attribute_graph, circuit_scores, select_circuit
from circuitft.eap.progress import Progress
from circuitft.eap.settings import CircuitSettings


@dataclass
class TaskResult:
    """What one analysis found for one task."""

    graph: Graph
    n_examples: int
    summary: dict[str, float]  # faithfulness, KL recovered % (kl metric), accuracies, n_edges, n_nodes
    size_curve: dict[str, dict[str, float]] = field(default_factory=dict)  # "0.05" -> numbers
    cross_task: dict[str, dict[str, float]] = field(default_factory=dict)  # other task -> numbers
    seconds: float = 0.0
    n_heldout: int = 0  # held-out rows the circuit was also scored on


def size_key(fraction: float) -> str:
    """Key of a size-curve point: the fraction as written (``0.001`` ... ``1.0``)."""
    return repr(float(fraction))


_SAID: list[str] = []  # the note on widened default circuits, printed once per process
# told (task, phase, done, total) after each batch of this rank's share: phase "attribute" or "evaluate"
Report = Callable[[str, str, int, int], None]


def analyse(
    model: torch.nn.Module,
    pairs: dict[str, PromptPairs],
    settings: CircuitSettings,
    ranks: Ranks,
    report: Report | None = None,
    heldout: dict[str, PromptPairs] | None = None,
    split_half: Collection[str] = (),
    cross_tasks: Collection[str] = (),
) -> dict[str, TaskResult]:
    """Analyse every task of ``pairs`` (non-empty pairs only); see the module docstring. ``report`` follows
    the work batch by batch (:func:`batches` gives the total).

    ``heldout``: each task's held-out rows (disjoint from its ``pairs``), on which its circuit is also scored
    (the ``*_heldout`` keys of :mod:`circuitft.eap.heldout`; NaN with ``n_examples_heldout`` 0 for a task
    without rows; None: no held-out keys).
    ``split_half``: tasks whose circuits are also found on the two halves of their rows, with the top-5% edge
    Jaccard of the two (``split_half_jaccard``: the overlap to expect from the rows alone).
    ``cross_tasks``: tasks whose circuits are also evaluated on each other's data."""
    results: dict[str, TaskResult] = {}
    for task, task_pairs in pairs.items():
        t0 = time.perf_counter()
        graph = _scores(model, task, task_pairs, settings, ranks, _hook(report, task, "attribute"))
        note = ranks.together(task, lambda graph=graph: select_circuit(graph, settings))
        if note is not None and ranks.rank == 0 and not _SAID:
            _SAID.append(note)
            tqdm.write(f"note: {note} (this run's default circuits, each task and step)", file=sys.stderr)
        results[task] = TaskResult(graph, len(task_pairs), {}, seconds=time.perf_counter() - t0)
    circuits = {task: r.graph.in_graph.clone() for task, r in results.items()}
    for task, r in results.items():
        t0 = time.perf_counter()
        hook = _hook(report, task, "evaluate")  # the circuit, its size curve and cross-task, in one pass
        _evaluate_on(model, task, pairs[task], r, results, circuits, settings, ranks, hook, cross_tasks)
        if heldout is not None:
            hook = _hook(report, task, "evaluate held-out")
            r.summary.update(_heldout_on(model, task, heldout.get(task), r, settings, ranks, hook))
        if task in split_half:
            r.summary["split_half_jaccard"] = _split_half(model, task, pairs[task], settings, ranks, report)
        r.n_heldout = int(r.summary.get("n_examples_heldout", 0))
        r.seconds = round(r.seconds + time.perf_counter() - t0, 3)
    return results


def batches(
    pairs: dict[str, PromptPairs],
    settings: CircuitSettings,
    ranks: Ranks,
    heldout: dict[str, PromptPairs] | None = None,
    split_half: Collection[str] = (),
) -> int:
    """Batches this rank attributes and evaluates in :func:`analyse` (the total its ``report`` counts to)."""
    count = lambda p: -(-len(ranks.shard(p)) // settings.batch_size)  # noqa: E731
    total = 2 * sum(count(p) for p in pairs.values() if len(p))
    total += sum(count(p) for t, p in (heldout or {}).items() if t in pairs and len(pairs[t]))
    halves = [h for t in split_half if t in pairs and len(pairs[t]) >= 2 for h in split_halves(pairs[t])]
    return total + sum(count(h) for h in halves)


def _hook(report: Report | None, task: str, phase: str) -> Progress:
    if report is None:
        return False
    return lambda done, total: report(task, phase, done, total)


def _scores(
    model: torch.nn.Module,
    task: str,
    pairs: PromptPairs,
    s: CircuitSettings,
    ranks: Ranks,
    progress: Progress = False,
) -> Graph:
    """The pipeline's attribution on each rank's shard; the sums gathered (every rank gets the mean)."""
    graph = Graph.from_model(model)
    mine = ranks.shard(pairs)

    def work() -> tuple[torch.Tensor | None, int, dict[str, Any]]:
        if len(mine) == 0:
            return None, 0, {}
        part = attribute_graph(model, mine, s, progress)
        # the sum over this rank's examples (attribute gives their mean)
        return part.scores.double() * len(mine), len(mine), dict(part.meta)

    parts = ranks.gather(task, work)
    total = sum(n for _, n, _ in parts)
    scores = torch.stack([x for x, _, _ in parts if x is not None]).sum(0) / total
    bad = int((~torch.isfinite(scores)).sum())
    if bad:  # the same on every rank: all raise together
        raise AnalysisFailed(task, f"{bad} of {scores.numel()} edge scores are not finite")
    graph.scores = scores.float()
    graph.meta.update(next(m for _, n, m in parts if n), n_examples=total)
    return graph


def _evaluate_on(
    model: torch.nn.Module,
    task: str,
    pairs: PromptPairs,
    own: TaskResult,
    results: dict[str, TaskResult],
    circuits: dict[str, torch.Tensor],
    s: CircuitSettings,
    ranks: Ranks,
    progress: Progress = False,
    cross: Collection[str] = (),
) -> None:
    """Evaluate on ``task``'s data: its circuit, its size curve, and (cross-task) every other circuit."""
    fractions = s.curve
    others = [t for t in circuits if t != task and task in cross and t in cross]
    sizes = ranks.together(task, lambda: size_masks(own.graph, fractions))
    masks = [circuits[task], *sizes, *(circuits[t] for t in others)]
    merged = _evaluate_sharded(model, own, masks, pairs, task, s, ranks, progress)
    own.summary = circuit_scores(merged[0], own.graph)
    main = own.summary
    for f, res in zip(fractions, merged[1 : 1 + len(fractions)], strict=True):
        point = faithfulness(res)
        own.size_curve[size_key(f)] = {
            "n_edges": float(res.n_edges),
            "faithfulness": point["faithfulness"] + 0.0,  # no -0
            **{k: point[k] for k in ("kl_recovered_pct",) if k in point},  # the kl metric only
            "circuit_accuracy": point["circuit_accuracy"],
        }
    if set(MIB_FRACTIONS) <= set(fractions):
        own.summary.update(mib_areas({f: own.size_curve[size_key(f)]["faithfulness"] for f in fractions}))
    base = main["faithfulness"]
    for other, res in zip(others, merged[1 + len(fractions) :], strict=True):
        f = faithfulness(res)["faithfulness"]
        # recorded under the circuit's owner: ``other``'s circuit on ``task``'s data
        results[other].cross_task[task] = {
            "faithfulness": f,
            "relative": f / base if base and math.isfinite(base) else math.nan,
        }


def _heldout_on(
    model: torch.nn.Module,
    task: str,
    pairs: PromptPairs | None,
    own: TaskResult,
    s: CircuitSettings,
    ranks: Ranks,
    progress: Progress = False,
) -> dict[str, float]:
    """``task``'s circuit scored on its held-out rows (:func:`circuitft.eap.heldout.heldout_scores`)."""
    if pairs is None or len(pairs) == 0:
        return heldout_scores(None, s.metric)
    mask = own.graph.in_graph.clone()
    return heldout_scores(_evaluate_sharded(model, own, [mask], pairs, task, s, ranks, progress)[0], s.metric)


def _evaluate_sharded(
    model: torch.nn.Module,
    own: TaskResult,
    masks: list[torch.Tensor],
    pairs: PromptPairs,
    task: str,
    s: CircuitSettings,
    ranks: Ranks,
    progress: Progress,
) -> list[EvalResult]:
    """Every rank evaluates ``masks`` on its shard of ``pairs``; one merged result per mask, in row order."""
    mine = ranks.shard(pairs)

    def work() -> list[EvalResult] | None:
        if len(mine) == 0:
            return None
        return evaluate_circuits(
            model,
            own.graph.cfg,
            masks,
            mine,
            metric=s.metric,
            batch_size=s.batch_size,
            dtype=s.dtype,
            accuracy=s.accuracy,
            progress=progress,
        )

    parts = [p for p in ranks.gather(task, work) if p is not None]
    return [_concat([p[i] for p in parts]) for i in range(len(masks))]


def _split_half(
    model: torch.nn.Module,
    task: str,
    pairs: PromptPairs,
    s: CircuitSettings,
    ranks: Ranks,
    report: Report | None = None,
) -> float:
    """Top-5% edge Jaccard of the circuits found on the two halves of ``pairs`` (NaN under 2 rows)."""
    if len(pairs) < 2:
        return math.nan
    a, b = (
        _scores(model, task, half, s, ranks, _hook(report, task, f"attribute half {i + 1}/2"))
        for i, half in enumerate(split_halves(pairs))
    )
    return float(top_k_jaccard(a, b, frac=DEFAULT_TOP_FRAC))


def _concat(parts: list[EvalResult]) -> EvalResult:
    """One EvalResult from the per-rank results on consecutive blocks of the examples."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return EvalResult(
        parts[0].metric,
        cat("clean"),
        cat("corrupted"),
        cat("circuit"),
        cat("model_correct"),
        cat("circuit_correct"),
        cat("kl_corr_clean"),
        cat("kl_corr_circ"),
        parts[0].n_edges,
    )
