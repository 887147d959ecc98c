"""circuitft's Python API: a model, its task data, its circuit, in a few calls.

    import circuitft as cf

    model = cf.load("smollm2-135m")                         # or adapter="dir" / checkpoint="last.ckpt"
    pairs = cf.make_pairs("AddSub", model, n=32, seed=0, lo=0, hi=9)
    circuit = cf.find_circuit(model, pairs)                 # EAP-IG-inputs, KL metric, top 5% of edges
    print(cf.evaluate_circuit(model, circuit, pairs))       # faithfulness, model and circuit accuracy
    print(circuit.top_edges(10))                            # a pandas table: edge, score, in_circuit
    cf.compare(circuit, other_circuit)                      # edge / node Jaccard, edge change

Everything here is a thin layer over :mod:`circuitft.models`, :mod:`circuitft.data` and
:mod:`circuitft.eap`; those modules stay available for finer control.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from circuitft import plots
from circuitft.argcheck import need, need_count, need_fraction, need_number
from circuitft.cache import cache_error
from circuitft.data.pairs import PromptPairs
from circuitft.data.sources import load_pairs as _load_pairs
from circuitft.data.tasks import make_pairs as _make_pairs
from circuitft.eap import DEFAULT_TOP_FRAC, pipeline
from circuitft.eap.graph import Graph
from circuitft.eap.heldout import disjoint_rows
from circuitft.eap.heldout import hold_out as _hold_out
from circuitft.eap.overlap import overlap
from circuitft.eap.settings import CircuitSettings
from circuitft.errors import ConfigError
from circuitft.limits import MAX_BATCH_SIZE, MAX_IG_STEPS, MAX_ROWS
from circuitft.models.frozen import load_analysis_model
from circuitft.models.loading import LoadedModel
from circuitft.quiet import quiet_framework

ModelLike = LoadedModel | torch.nn.Module
log = logging.getLogger("circuitft")


def load(
    model: str | None = None,
    *,
    adapter: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The analysis form (merged, frozen, float32) of ``model`` with an optional adapter or checkpoint.

    ``model`` is a built-in name (``smollm2-135m``, ``tiny-gpt2``, ...), a Hugging Face folder or a cached hub
    name; a circuitft checkpoint names its own model, so ``load(checkpoint="runs/x/checkpoints/last.ckpt")``
    is enough. ``progress=False`` hides the Hugging Face loading bars.
    """
    need(model, "model", str, os.PathLike, none=True)
    need(adapter, "adapter", str, os.PathLike, none=True)
    need(checkpoint, "checkpoint", str, os.PathLike, none=True)
    need(device, "device", str, torch.device, none=True)
    need(progress, "progress", bool)
    model = None if model is None else str(model)
    quiet_framework()  # the named framework warnings only (CIRCUITFT_VERBOSE=1 keeps them)
    try:
        return load_analysis_model(
            model, adapter=adapter, checkpoint=checkpoint, device=device, progress=progress
        )
    except OSError as err:
        message = cache_error(err)
        if message is None:
            raise
        raise ConfigError(message) from None


def make_pairs(task: str, model: ModelLike | Any, n: int, seed: int = 0, **params: Any) -> PromptPairs:
    """``n`` seeded rows of built-in task ``task`` tokenized for ``model`` (a loaded model or a tokenizer).

    ``params`` go to the task's generator (``circuitft tasks show TASK`` lists them).
    """
    need(task, "task", str)
    need_count(n, "n", MAX_ROWS)
    need(seed, "seed", int)
    return _make_pairs(task, _tokenizer(model), int(n), int(seed), **params)


def load_pairs(
    source: str | Path, model: ModelLike | Any, task: str | None = None, on_mismatch: str = "drop"
) -> PromptPairs:
    """Rows of a CSV/JSONL file, dataset folder or ``hf:NAME`` tokenized for ``model``.

    Rows whose clean and corrupted prompts tokenize to different lengths are dropped and counted
    (``pairs.n_dropped``), or with ``on_mismatch="error"`` named in an error.
    """
    need(source, "source", str, os.PathLike)
    need(task, "task", str, none=True)
    need(on_mismatch, "on_mismatch", str)
    return _load_pairs(source, _tokenizer(model), task=task, on_mismatch=on_mismatch)  # type: ignore[arg-type]


def find_circuit(
    model: ModelLike,
    pairs: PromptPairs,
    *,
    method: str = "EAP-IG-inputs",
    metric: str = "kl",
    ig_steps: int = 5,
    top_frac: float | None = None,
    top_n: int | None = None,
    threshold: float | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> Graph:
    """Score every edge of ``model`` on ``pairs`` and select the circuit (default: top 5% of edges, pruned; on a
    graph too small for any of them to survive pruning, the smallest top-n that keeps a connected circuit, said in
    one logged line).

    Returns the :class:`~circuitft.eap.graph.Graph`: ``scores`` for every edge, ``in_graph`` for the circuit.
    """
    net = _module(model)
    need(pairs, "pairs", PromptPairs)
    need(method, "method", str)
    need(metric, "metric", str)
    need_count(ig_steps, "ig_steps", MAX_IG_STEPS)
    need_fraction(top_frac, "top_frac", none=True)
    need_count(top_n, "top_n", 2**62, none=True)
    need_number(threshold, "threshold", none=True)
    need_count(batch_size, "batch_size", MAX_BATCH_SIZE)
    settings = CircuitSettings(
        method=method,
        metric=metric,
        ig_steps=int(ig_steps),
        batch_size=int(batch_size),
        top_frac=top_frac,
        top_n=top_n,
        threshold=threshold,
        baseline_samples=0,
        size_curve="false",
        where="",
    )
    found = pipeline.find_circuit(net, pairs, settings, evaluate=False, progress=progress)
    if found.note is not None:  # the top 5%, or on a graph too small for it the smallest connected circuit
        log.warning(found.note)
    return found.graph


def evaluate_circuit(
    model: ModelLike,
    circuit: Graph,
    pairs: PromptPairs,
    *,
    metric: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    heldout: PromptPairs | None = None,
) -> dict[str, float]:
    """Faithfulness (both definitions), the clean-corrupted ``metric_gap``, model and circuit accuracy of
    ``circuit`` on ``pairs`` (with ``n_examples``).

    ``metric`` defaults to the one the circuit was found with (``kl`` when unknown). ``heldout``: rows that
    were not used to find the circuit (e.g. the second part of :func:`hold_out`); the same numbers on them
    come as ``faithfulness_heldout``, ``kl_recovered_pct_heldout``, ``model_accuracy_heldout``,
    ``circuit_accuracy_heldout``, ``metric_gap_heldout`` and ``n_examples_heldout`` (held-out rows whose
    clean prompt is also in ``pairs`` are left out).
    """
    net = _module(model)
    need(circuit, "circuit", Graph)
    need(pairs, "pairs", PromptPairs)
    need(metric, "metric", str, none=True)
    need_count(batch_size, "batch_size", MAX_BATCH_SIZE)
    settings = CircuitSettings(
        metric=metric or circuit.meta.get("metric") or "kl",
        batch_size=int(batch_size),
        baseline_samples=0,
        size_curve="false",
        where="",
    )
    rows = None if heldout is None else disjoint_rows(pairs, heldout)[0]
    found = pipeline.evaluate_circuit(net, circuit, pairs, settings, heldout=rows, progress=progress)
    out = {k: float(v) for k, v in found.scores.items() if k not in ("n_edges", "n_nodes")}
    out["n_examples"] = float(len(pairs))
    out["n_edges"] = found.scores["n_edges"]
    out["n_nodes"] = found.scores["n_nodes"]
    out.update(found.heldout or {})
    return out


def hold_out(pairs: PromptPairs, frac: float = 0.5) -> tuple[PromptPairs, PromptPairs]:
    """``(discovery, heldout)``: find the circuit on the first rows and score it on the last ``frac`` share
    (``evaluate_circuit(..., heldout=heldout)``); held-out rows never share a clean prompt with discovery rows.
    """
    try:
        return _hold_out(pairs, frac)
    except ValueError as err:
        raise ConfigError(f"hold_out: {err}") from None


def compare(a: Graph, b: Graph, frac: float = DEFAULT_TOP_FRAC) -> dict[str, Any]:
    """How two circuits of the same model differ: edge and node Jaccard, top-k Jaccard, edge change."""
    need(a, "a", Graph)
    need(b, "b", Graph)
    need_fraction(frac, "frac")
    return overlap(a, b, frac=frac)


def draw(circuit: Graph, **kwargs: Any) -> Any:
    """A matplotlib figure of ``circuit`` (layers left to right, edges coloured by sign, width by |score|)."""
    need(circuit, "circuit", Graph)
    return plots.circuit_diagram(circuit, **kwargs)


def _module(model: ModelLike) -> torch.nn.Module:
    net = model.model if isinstance(model, LoadedModel) else model
    if not isinstance(net, torch.nn.Module) or not hasattr(net, "config"):
        raise ConfigError(
            f"expected a model from circuitft.load(...) or a Hugging Face model, got {type(model)}"
        )
    return net


def _tokenizer(model: ModelLike | Any) -> Any:
    if isinstance(model, LoadedModel):
        return model.tokenizer
    if isinstance(model, torch.nn.Module):
        raise ConfigError("give the LoadedModel from circuitft.load(...) (or a tokenizer), not a bare model")
    return model


__all__ = [
    "compare",
    "draw",
    "evaluate_circuit",
    "find_circuit",
    "hold_out",
    "load",
    "load_pairs",
    "make_pairs",
]
