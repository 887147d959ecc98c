"""MIB's circuit-localization numbers (CPR, CMD) from a size curve, and circuits in the layout MIB reads.

The circuit track of the Mechanistic Interpretability Benchmark (MIB) scores a circuit-finding method by its
faithfulness curve over fixed edge fractions, :data:`MIB_FRACTIONS` (0.1% ... 100% of the edges, the same
fractions as circuitft's default size curve). With ``f_i`` the normalised faithfulness at fraction ``x_i``
(fractions, not percent; linear scale), by the trapezoid rule over consecutive fractions:

- CPR (area under the curve) = ``sum_i (x_{i+1} - x_i) (f_i + f_{i+1}) / 2`` (higher is better);
- CMD (area between the curve and 1) = ``sum_i (x_{i+1} - x_i) (|1 - f_i| + |1 - f_{i+1}|) / 2`` (lower
  is better).

As MIB does, faithfulness is normalised between the full model (1) and the empty circuit, whose run is the
corrupted run (0), and the circuit at fraction x holds the ``int(x * n_edges)`` best edges, pruned. circuitft
ranks edges by ``|score|`` (MIB's CMD ranking; its CPR ranks by signed score when a method's scores have a
sign) and uses the run's task metric (MIB: logit difference).

:func:`write_mib` writes one model's circuits for a task as MIB's evaluation and submission checker read
them: a folder ``<task>_<model>/`` with ``importances.json`` (every edge's score) and one circuit per
non-zero fraction below 100% (``edges_<percent>pct.json``, edges marked ``in_graph``, at most that share).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from circuitft.eap.graph import Graph
from circuitft.eap.io import write_json
from circuitft.eap.select import apply_topn
from circuitft.eap.settings import MIB_FRACTIONS as MIB_FRACTIONS  # re-exported


def mib_areas(curve: Mapping[float, float]) -> dict[str, float]:
    """``{"cpr", "cmd"}`` of a size curve ``{fraction: faithfulness}`` (see module docstring); both NaN
    unless the curve has a finite value at every one of :data:`MIB_FRACTIONS`."""
    points = {round(float(x), 12): float(f) for x, f in curve.items() if f is not None}
    ys = [points.get(round(x, 12), math.nan) for x in MIB_FRACTIONS]
    if not all(math.isfinite(y) for y in ys):
        return {"cpr": math.nan, "cmd": math.nan}
    cpr = cmd = 0.0
    for i in range(len(MIB_FRACTIONS) - 1):
        dx = MIB_FRACTIONS[i + 1] - MIB_FRACTIONS[i]
        cpr += dx * (ys[i] + ys[i + 1]) / 2
        cmd += dx * (abs(1.0 - ys[i]) + abs(1.0 - ys[i + 1])) / 2
    return {"cpr": cpr, "cmd": cmd}


def at_fractions(curve: Mapping[float, float], n_edges: int) -> dict[float, float]:
    """``curve`` (``{fraction: faithfulness}``) at each of :data:`MIB_FRACTIONS`, where a curve that evaluated
    each distinct circuit once (a small graph maps several fractions to the same ``max(1, int(f * n_edges))``
    edges) stands for every fraction of the same size; missing fractions are left out."""
    by_size = {max(1, int(float(f) * n_edges)): v for f, v in curve.items()}
    out = {}
    for f in MIB_FRACTIONS:
        n = max(1, int(f * n_edges))
        if n in by_size:
            out[f] = by_size[n]
    return out


def write_mib(graph: Graph, folder: str | os.PathLike[str], task: str, model: str) -> Path:
    """Write ``graph``'s scores and its circuits at MIB's fractions under ``folder/<task>_<model>/``.

    ``graph`` keeps its own circuit. Returns the task folder."""

    out = Path(folder) / f"{task}_{model}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(graph, out / "importances.json")
    saved = graph.in_graph.clone(), graph.nodes_in_graph.clone()
    try:
        for frac in MIB_FRACTIONS[:-1]:
            apply_topn(graph, max(1, int(frac * graph.n_edges)), prune=True)
            write_json(graph, out / f"edges_{100 * frac:g}pct.json")
    finally:
        graph.in_graph, graph.nodes_in_graph = saved
    return out
