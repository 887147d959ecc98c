"""Out-of-sample circuit scores: a circuit found on discovery rows, scored on held-out rows it never saw.

A circuit found by attribution on some rows and evaluated on the same rows is scored in-sample; the same
numbers on rows that took no part in finding it say how far the circuit generalises. Every place that finds
a circuit (the CircuitCallback, ``circuitft circuit``, the Python API) evaluates it on its held-out rows
with :func:`circuitft.eap.evaluate.evaluate` (or, in the callback, the rank-sharded equivalent) and turns the
result into the record keys with :func:`heldout_scores`:

- ``faithfulness_heldout``, ``kl_recovered_pct_heldout`` (``kl`` metric only), ``circuit_accuracy_heldout``,
  ``model_accuracy_heldout``, ``metric_gap_heldout``: as the in-sample keys, on the held-out rows;
- ``n_examples_heldout``: the held-out rows (0, with NaN scores, when there are none).

:func:`disjoint_rows` drops held-out rows whose clean prompt is among the discovery rows (the two row sets
must not share a problem) and says how many it dropped.
"""

from __future__ import annotations

import math

import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.evaluate import EvalResult, evaluate, faithfulness
from circuitft.eap.graph import Graph

HELDOUT_KEYS = (
    "faithfulness",
    "kl_recovered_pct",
    "circuit_accuracy",
    "model_accuracy",
    "metric_gap",
)
SUFFIX = "_heldout"


def heldout_scores(result: EvalResult | None, metric: str = "kl") -> dict[str, float]:
    """The ``*_heldout`` keys and ``n_examples_heldout`` of an evaluation on held-out rows (None: no rows,
    every score NaN; ``metric`` then says whether ``kl_recovered_pct_heldout`` belongs)."""
    if result is None or len(result) == 0:
        keys = [k for k in HELDOUT_KEYS if k != "kl_recovered_pct" or metric == "kl"]
        return {**{k + SUFFIX: math.nan for k in keys}, "n_examples_heldout": 0.0}
    scores = faithfulness(result)
    out = {k + SUFFIX: float(scores[k]) for k in HELDOUT_KEYS if k in scores}
    out["n_examples_heldout"] = float(len(result))
    return out


def disjoint_rows(discovery: PromptPairs, heldout: PromptPairs) -> tuple[PromptPairs, int]:
    """``heldout`` without the rows whose clean prompt is also a discovery row, and how many were dropped."""
    seen = {r.clean for r in discovery.rows}
    keep = [i for i, r in enumerate(heldout.rows) if r.clean not in seen]
    if len(keep) == len(heldout):
        return heldout, 0
    return heldout.subset(keep), len(heldout) - len(keep)


def evaluate_heldout(
    model: torch.nn.Module,
    graph: Graph,
    heldout: PromptPairs | None,
    *,
    metric: str = "kl",
    batch_size: int = 8,
    dtype: torch.dtype | str | None = None,
    accuracy: str = "exact_match",
    progress: bool = False,
) -> dict[str, float]:
    """Evaluate ``graph``'s circuit on the ``heldout`` rows and return :func:`heldout_scores` of it."""
    if heldout is None or len(heldout) == 0:
        return heldout_scores(None, metric)
    result = evaluate(
        model,
        graph,
        heldout,
        metric=metric,
        batch_size=batch_size,
        progress=progress,
        dtype=dtype,
        accuracy=accuracy,
    )
    return heldout_scores(result)


def hold_out(pairs: PromptPairs, frac: float) -> tuple[PromptPairs, PromptPairs]:
    """(discovery, held-out): the last ``frac`` share of ``pairs`` (at least one row) held out, without
    held-out rows whose clean prompt is also a discovery row. ValueError when no discovery row is left."""
    if not 0 < frac < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, got {frac}")
    n_held = max(1, round(frac * len(pairs)))
    if n_held >= len(pairs):
        raise ValueError(f"{len(pairs)} rows leave none to find the circuit on after holding out {n_held}")
    cut = len(pairs) - n_held
    discovery = pairs.subset(range(cut))
    return discovery, disjoint_rows(discovery, pairs.subset(range(cut, len(pairs))))[0]


def split_halves(pairs: PromptPairs) -> tuple[PromptPairs, PromptPairs]:
    """Two disjoint halves of ``pairs`` (even and odd rows), for a split-half reliability of a circuit."""
    n = len(pairs)
    return pairs.subset(range(0, n, 2)), pairs.subset(range(1, n, 2))
