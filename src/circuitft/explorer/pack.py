"""A run's circuits packed compactly for the interactive explorer (report page and TensorBoard tab).

Three JSON-ready pieces, the same wherever the explorer runs:

- :func:`layout`: the model's nodes (name, layer, head, kind, (x, y) as :func:`~circuitft.plots.diagram.node_positions`
  lays them out: layers bottom to top, heads left to right, MLPs at the right end) and its destinations
  (name, owning node, kind ``q``/``k``/``v``/``mlp``/``logits``);
- :func:`pack_graph`: one scored graph's strongest edges, strongest first (:func:`~circuitft.eap.topk.top_k`
  on ``|score|``, ties by canonical edge position, as everywhere in circuitft), as base64 little-endian
  arrays ``src`` (uint16 forward index), ``dst`` (uint16 backward index), ``score`` (float32, the file's
  exact values) and ``in_circuit`` (uint8);
- :func:`run_index`: the run's tasks, analysed steps, task ends, layout and accuracy/faithfulness curves from
  its records (``metrics.jsonl``), without any graph.

:func:`pack_run` joins them with every graph of the run (what ``explorer.html`` embeds).
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.topk import top_k
from circuitft.errors import DataError
from circuitft.plots.diagram import destination_kinds, node_positions

SHIP_FRAC = 0.10  # share of each graph's edges the explorer receives (its size slider's upper end) ...
SHIP_FLOOR = 1000  # ... but at least this many (every edge of a small model)
CURVE_COLUMNS = ("model_accuracy", "circuit_accuracy", "faithfulness")


def shipped_count(n_edges: int, frac: float = SHIP_FRAC, floor: int = SHIP_FLOOR) -> int:
    """How many of a graph's ``n_edges`` edges are packed: ``ceil(frac * n_edges)``, at least ``floor``."""
    return min(n_edges, max(math.ceil(frac * n_edges), floor))


def layout(cfg: GraphConfig) -> dict[str, Any]:
    """Nodes and destinations of a model shaped ``cfg``, with the static diagram's positions."""
    if cfg.n_forward + 1 > 65535 or cfg.n_backward > 65535:
        raise DataError(
            f"the explorer packs node indices as uint16; a graph with {cfg.describe()} is too big"
        )
    pos = node_positions(cfg)
    layers: list[int] = []
    heads: list[int | None] = []
    kinds: list[str] = []
    for name in cfg.node_names:
        layer, head, kind = _node(name, cfg.n_layers)
        layers.append(layer)
        heads.append(head)
        kinds.append(kind)
    return {
        "cfg": cfg.to_dict(),
        "n_edges": cfg.n_edges,
        "nodes": {
            "name": cfg.node_names,
            "layer": layers,
            "head": heads,
            "kind": kinds,
            "x": [round(float(v), 4) for v in pos[:, 0]],
            "y": [round(float(v), 4) for v in pos[:, 1]],
        },
        "dst": {
            "name": cfg.backward_names,
            "node": cfg.destination_node.tolist(),
            "kind": destination_kinds(cfg),
        },
    }


def _node(name: str, n_layers: int) -> tuple[int, int | None, str]:
    """(layer, head, kind) of a node name; input is layer -1, logits layer ``n_layers``."""
    if name == "input":
        return -1, None, "input"
    if name == "logits":
        return n_layers, None, "logits"
    if name.startswith("m"):
        return int(name[1:]), None, "mlp"
    layer, head = name[1:].split(".h")
    return int(layer), int(head), "head"


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(
        np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    ).decode()


def pack_graph(graph: Graph, frac: float = SHIP_FRAC, floor: int = SHIP_FLOOR) -> dict[str, Any]:
    """``graph``'s :func:`shipped_count` strongest edges by ``|score|``, strongest first, base64-packed."""
    cfg = graph.cfg
    src, dst = cfg.edge_coords
    scores = graph.edge_scores().float()
    order = top_k(scores.abs(), shipped_count(cfg.n_edges, frac, floor))
    s, d = src[order], dst[order]
    in_circuit = graph.in_graph.cpu()[s, d]
    node_scores = None
    if graph.node_scores is not None:
        node_scores = [None if not math.isfinite(v) else v for v in graph.node_scores.float().tolist()]
    return {
        "n_edges": cfg.n_edges,
        "n_circuit": graph.count_edges(),
        "count": len(order),
        "src": _b64(s.numpy().astype(np.uint16)),
        "dst": _b64(d.numpy().astype(np.uint16)),
        "score": _b64(scores[order].numpy().astype(np.float32)),
        "in_circuit": _b64(in_circuit.numpy().astype(np.uint8)),
        "node_scores": node_scores,
    }


def unpack_graph(packed: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a :func:`pack_graph` result (``src``, ``dst``, ``score``, ``in_circuit``), for checks."""
    types = {"src": "<u2", "dst": "<u2", "score": "<f4", "in_circuit": "u1"}
    return {k: np.frombuffer(base64.b64decode(packed[k]), dtype=t) for k, t in types.items()}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def run_index(run: Any) -> dict[str, Any]:
    """A run's tasks, analysed steps per task, task ends, curves and layout (``run``: an
    :class:`~circuitft.analysis.runs.RunData`); reads one graph file for the model's shape."""
    records = run.records
    steps = {t: sorted(int(s) for s in records.loc[records["task"] == t, "step"]) for t in run.tasks}
    steps = {t: s for t, s in steps.items() if s}
    if not steps:
        raise DataError(f"{run.path}: no analysed circuit to explore")
    first_task = next(iter(steps))
    cfg = run.graph(steps[first_task][0], first_task).cfg
    curves: dict[str, dict[str, list[Any]]] = {}
    for task in steps:
        rows = records[records["task"] == task].sort_values("step")
        curves[task] = {"step": [int(s) for s in rows["step"]]}
        for column in CURVE_COLUMNS:
            curves[task][column] = [_num(v) for v in rows[column]]
    return {
        "name": run.name,
        "model": run.model,
        "tasks": list(steps),
        "steps": steps,
        "task_ends": {t: run.task_ends.get(t) for t in steps},
        "curves": curves,
        "layout": layout(cfg),
    }


def pack_run(run: Any, frac: float = SHIP_FRAC, floor: int = SHIP_FLOOR) -> dict[str, Any]:
    """:func:`run_index` with every analysed graph packed: ``graphs[task][str(step)]``."""
    index = run_index(run)
    index["graphs"] = {
        task: {str(step): pack_graph(run.graph(step, task), frac, floor) for step in steps}
        for task, steps in index["steps"].items()
    }
    return index


__all__ = [
    "SHIP_FLOOR",
    "SHIP_FRAC",
    "layout",
    "pack_graph",
    "pack_run",
    "run_index",
    "shipped_count",
    "unpack_graph",
]
