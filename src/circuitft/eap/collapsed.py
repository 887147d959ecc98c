"""Collapsed graphs: one edge per (source, head) instead of three (q, k, v), as FinetuneCircuits saved them.

FinetuneCircuits' ``collapse_qkv.py`` rewrote every graph JSON so that ``input->a0.h0<q>``,
``input->a0.h0<k>`` and ``input->a0.h0<v>`` become one edge ``input->a0.h0`` (scores summed), and kept only
the edges in the circuit. Such a file cannot be read as a full :class:`~circuitft.eap.graph.Graph`; it is a
:class:`CollapsedGraph`: sources are the full graph's (``input``, heads, MLPs), destinations are the nodes
themselves (``a{l}.h{h}``, ``m{l}``, ``logits``).

- :func:`collapse` turns a full graph into a collapsed one: a head edge is in the circuit if any of its q/k/v
  edges is; its score is the sum of the q/k/v scores (``scores="all"``) or, as ``collapse_qkv.py`` wrote it,
  of those in the circuit (``scores="circuit"``). With grouped-query attention a head's k/v edges are those
  of its key/value group.
- :func:`read_collapsed_json` reads FinetuneCircuits' files (listed edges only; unlisted edges score 0 and
  are out of the circuit); :func:`write_collapsed_json` writes the same shape; :func:`load_circuit` reads
  any graph file and returns a Graph or a CollapsedGraph, whichever the file holds.
- :func:`as_collapsed` gives the collapsed form of either; :mod:`circuitft.eap.overlap` uses it to compare a
  collapsed circuit with a full one.

Layout: destination ``d`` is node ``d + 1`` of :attr:`GraphConfig.node_names` (head (l, h) is
``l*(H+1) + h``, MLP l is ``l*(H+1) + H``, logits is last), so ``scores`` is [n_forward, n_forward].
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.io import (
    cfg_dict,
    graph_from_dict,
    is_collapsed,
    load_graph,
    load_graph_dict,
    parse_cfg,
    read_nodes,
    same_d_model,
)
from circuitft.errors import DataError
from circuitft.files import atomic_write_text


@dataclass
class CollapsedGraph:
    """A circuit over sources and whole nodes (q/k/v merged); see the module docstring.

    ``scores`` [n_forward, n_forward] float32 and ``in_graph`` [n_forward, n_forward] bool are indexed by
    (source, destination); ``nodes_in_graph`` [n_forward + 1] bool as in :class:`Graph`.
    """

    cfg: GraphConfig
    scores: torch.Tensor
    in_graph: torch.Tensor
    nodes_in_graph: torch.Tensor
    node_scores: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, cfg: GraphConfig) -> CollapsedGraph:
        """A collapsed graph with no edge in the circuit and only ``logits`` among the nodes."""
        n = cfg.n_forward
        nodes = torch.zeros(n + 1, dtype=torch.bool)
        nodes[-1] = True
        return cls(cfg, torch.zeros(n, n), torch.zeros(n, n, dtype=torch.bool), nodes)

    @property
    def real_edge_mask(self) -> torch.Tensor:
        """[n_forward, n_forward] bool: which (source, destination) pairs are edges."""
        return collapsed_edge_mask(self.cfg)

    @property
    def n_edges(self) -> int:
        """Number of collapsed edges of the model."""
        return int(self.real_edge_mask.sum())

    def count_edges(self) -> int:
        """Number of edges in the circuit."""
        return int((self.in_graph & self.real_edge_mask).sum())

    def edges_in_graph(self) -> list[str]:
        """Names of the circuit's edges (``input->a0.h0``), sources in forward order."""
        names = self.cfg.node_names
        src, dst = (self.in_graph & self.real_edge_mask).nonzero(as_tuple=True)
        return [f"{names[s]}->{names[d + 1]}" for s, d in zip(src.tolist(), dst.tolist(), strict=True)]

    def __repr__(self) -> str:
        return f"CollapsedGraph({self.cfg.describe()}, edges {self.count_edges()}/{self.n_edges})"


def collapsed_edge_mask(cfg: GraphConfig) -> torch.Tensor:
    """[n_forward, n_forward] bool: source s feeds destination d (node d + 1)."""
    prev = torch.empty(cfg.n_forward, dtype=torch.long)
    for layer in range(cfg.n_layers):
        start = layer * (cfg.n_heads + 1)
        prev[start : start + cfg.n_heads] = cfg.attn_prev(layer)
        prev[start + cfg.n_heads] = cfg.mlp_prev(layer)
    prev[-1] = cfg.n_forward
    return torch.arange(cfg.n_forward)[:, None] < prev[None, :]


def _columns(cfg: GraphConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each collapsed destination, the full graph's q, k and v columns (all three equal for MLPs and
    logits, whose one input column is repeated)."""
    q, k, v = [], [], []
    for layer in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            g = int(cfg.head_group[h])
            q.append(cfg.q_index(layer, h))
            k.append(cfg.k_index(layer, g))
            v.append(cfg.v_index(layer, g))
        for cols in (q, k, v):
            cols.append(cfg.mlp_in_index(layer))
    for cols in (q, k, v):
        cols.append(cfg.logits_index)
    return torch.tensor(q), torch.tensor(k), torch.tensor(v)


def collapse(graph: Graph, scores: Literal["all", "circuit"] = "all") -> CollapsedGraph:
    """The collapsed form of a full graph (see the module docstring for ``scores``)."""
    if scores not in ("all", "circuit"):
        raise DataError(f"collapse: scores must be 'all' or 'circuit', got {scores!r}")
    cfg = graph.cfg
    s = graph.scores.detach().cpu().float()
    inside = graph.in_graph.cpu() & cfg.real_edge_mask
    if scores == "circuit":
        s = s * inside
    q, k, v = _columns(cfg)
    is_head = torch.ones(cfg.n_forward, dtype=torch.bool)
    is_head[cfg.n_heads :: cfg.n_heads + 1] = False  # MLP destinations
    is_head[-1] = False  # logits
    summed = torch.where(is_head[None, :], s[:, q] + s[:, k] + s[:, v], s[:, q])
    merged = inside[:, q] | inside[:, k] | inside[:, v]
    mask = collapsed_edge_mask(cfg)
    return CollapsedGraph(
        cfg=cfg,
        scores=summed * mask,
        in_graph=merged & mask,
        nodes_in_graph=graph.nodes_in_graph.cpu().clone(),
        node_scores=None if graph.node_scores is None else graph.node_scores.cpu().clone(),
        meta={**graph.meta, "collapsed": f"q/k/v merged per head, scores: {scores}"},
    )


def as_collapsed(graph: Graph | CollapsedGraph) -> CollapsedGraph:
    """``graph`` itself if collapsed, else :func:`collapse` of it."""
    return graph if isinstance(graph, CollapsedGraph) else collapse(graph)


# ---- files --------------------------------------------------------------------------------------------
def read_collapsed_json(path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> CollapsedGraph:
    """Read a collapsed graph JSON (FinetuneCircuits' ``collapse_qkv.py`` output or :func:`write_collapsed_json`).

    ``cfg`` (optional) is the shape of the model it must fit; a file of another shape raises
    :class:`DataError`. Edges not listed are out of the circuit with score 0; a ``null`` score reads as 0.
    """
    return _collapsed_from_dict(load_graph_dict(path), Path(path), cfg)


def _collapsed_from_dict(d: dict[str, Any], path: Path, cfg: GraphConfig | None) -> CollapsedGraph:
    where = f"{path}: "
    file_cfg = parse_cfg(d["cfg"], where)
    if cfg is not None and not (cfg.same_edges(file_cfg) and same_d_model(cfg, file_cfg)):
        raise DataError(f"{where}graph has {file_cfg.describe()}, model has {cfg.describe()}")
    out = CollapsedGraph.empty(cfg or file_cfg)
    lookup, mask = out.cfg.node_lookup, out.real_edge_mask
    for name, entry in d["edges"].items():
        src, sep, dst = name.partition("->")
        s, t = lookup.get(src), lookup.get(dst)
        if not sep or s is None or t is None or "<" in dst or t == 0 or s == out.cfg.n_forward:
            raise DataError(
                f"{where}edge {name!r} is not a collapsed edge of a graph with {out.cfg.describe()}"
            )
        if not mask[s, t - 1]:
            raise DataError(f"{where}edge {name!r}: its source is not upstream of its destination")
        if not isinstance(entry, dict) or "in_graph" not in entry or "score" not in entry:
            raise DataError(f"{where}edge {name!r} needs an object with 'score' and 'in_graph'")
        score = entry["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise DataError(f"{where}edge {name!r}: score must be a number, got {score!r}")
        out.scores[s, t - 1] = 0.0 if score is None else float(score)
        out.in_graph[s, t - 1] = bool(entry["in_graph"])
    read_nodes(out, d["nodes"], where)  # type: ignore[arg-type]  # same node fields as a Graph
    meta = d.get("meta", {})
    out.meta = dict(meta) if isinstance(meta, dict) else {}
    return out


def write_collapsed_json(graph: CollapsedGraph, path: str | os.PathLike[str]) -> None:
    """Write FinetuneCircuits' collapsed shape: cfg, every node, the circuit's edges only; atomically."""
    names = graph.cfg.node_names
    nodes = graph.nodes_in_graph.tolist()
    nodes[-1] = True
    src, dst = (graph.in_graph & graph.real_edge_mask).nonzero(as_tuple=True)
    edges = {
        f"{names[s]}->{names[t + 1]}": {"score": float(graph.scores[s, t]), "in_graph": True}
        for s, t in zip(src.tolist(), dst.tolist(), strict=True)
    }
    d = {
        "cfg": cfg_dict(graph.cfg),
        "nodes": {name: {"in_graph": bool(flag)} for name, flag in zip(names, nodes, strict=True)},
        "edges": edges,
        "meta": graph.meta,
    }
    atomic_write_text(path, json.dumps(d, default=str) + "\n")


def load_circuit(path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> Graph | CollapsedGraph:
    """Read any graph file: a collapsed JSON as a :class:`CollapsedGraph`, anything else as a :class:`Graph`."""
    path = Path(path)
    if path.suffix != ".json":
        return load_graph(path, cfg)
    d = load_graph_dict(path)  # parsed once, whichever kind it is
    return (
        _collapsed_from_dict(d, path, cfg)
        if is_collapsed(list(d["edges"]))
        else graph_from_dict(d, path, cfg)
    )
