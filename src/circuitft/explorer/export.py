"""A circuit as a networkx graph and as GraphML/GEXF files (Gephi, Cytoscape), with labelled nodes and edges.

Nodes are the model's nodes (``input``, heads ``a{l}.h{h}``, MLPs ``m{l}``, ``logits``), with attributes
``name``, ``kind`` (input/head/mlp/logits), ``layer`` (-1 for input, ``n_layers`` for logits), ``head`` (-1
when not a head), ``x`` and ``y`` (the static diagram's layout) and ``score`` when the graph has node scores.
Edges are the circuit's edges (or the ``top`` strongest edges by ``|score|``), keyed by their reference name
(``a0.h1->a2.h3<q>``); a head's q, k and v inputs from one source are three parallel edges, so the graph is a
``MultiDiGraph``. Edge attributes: ``name``, ``score`` (float32 value of the file, as a float), ``input``
(``q``/``k``/``v``/``mlp``/``logits``), ``layer`` and ``head`` of the destination (``head`` -1 when the input
is not a head's), ``in_circuit``.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx

from circuitft.eap.graph import Graph
from circuitft.eap.topk import top_k
from circuitft.errors import ConfigError
from circuitft.explorer.pack import layout
from circuitft.files import atomic_write

FILES = ("circuit.graphml", "circuit.gexf")


def to_networkx(graph: Graph, top: int | None = None) -> nx.MultiDiGraph:
    """The circuit of ``graph`` (or its ``top`` strongest edges) as a labelled ``MultiDiGraph``."""
    cfg = graph.cfg
    lay = layout(cfg)
    nodes, dsts = lay["nodes"], lay["dst"]
    src, dst = cfg.edge_coords
    scores = graph.edge_scores().float()
    in_circuit = (graph.in_graph.cpu() & cfg.real_edge_mask)[src, dst]
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= cfg.n_edges:
            raise ConfigError(f"--top must be an integer in [1, {cfg.n_edges}], got {top!r}")
        chosen = top_k(scores.abs(), top).sort().values
    else:
        chosen = in_circuit.nonzero().flatten()
    g = nx.MultiDiGraph(name="circuit", edges_kept="top" if top is not None else "circuit")
    node_scores = graph.node_scores.float().tolist() if graph.node_scores is not None else None
    for i, name in enumerate(nodes["name"]):
        head = nodes["head"][i]
        attrs = {
            "name": name,
            "kind": nodes["kind"][i],
            "layer": int(nodes["layer"][i]),
            "head": -1 if head is None else int(head),
            "x": float(nodes["x"][i]),
            "y": float(nodes["y"][i]),
        }
        if node_scores is not None and math.isfinite(node_scores[i]):
            attrs["score"] = float(node_scores[i])
        g.add_node(name, **attrs)
    for i in chosen.tolist():
        s, d = int(src[i]), int(dst[i])
        owner = int(dsts["node"][d])
        head = nodes["head"][owner]
        name = f"{cfg.forward_names[s]}->{cfg.backward_names[d]}"
        g.add_edge(
            cfg.forward_names[s],
            nodes["name"][owner],
            key=name,
            name=name,
            score=float(scores[i]),
            input=dsts["kind"][d],
            layer=int(nodes["layer"][owner]),
            head=-1 if head is None or dsts["kind"][d] not in ("q", "k", "v") else int(head),
            in_circuit=bool(in_circuit[i]),
        )
    return g


def write_graph_files(graph: Graph, out: str | Path, top: int | None = None) -> list[Path]:
    """Write ``out/circuit.graphml`` and ``out/circuit.gexf`` (each atomically); returns their paths."""
    out = Path(out)
    g = to_networkx(graph, top)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in FILES]
    atomic_write(paths[0], lambda tmp: nx.write_graphml(g, tmp))
    atomic_write(paths[1], lambda tmp: nx.write_gexf(g, tmp))
    return paths


__all__ = ["FILES", "to_networkx", "write_graph_files"]
