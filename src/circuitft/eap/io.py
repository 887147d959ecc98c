"""Graph files: the reference library's JSON and a compact safetensors form. All writes are atomic.

JSON (hannamw/EAP-IG ``to_json`` / ``from_json`` shape, readable by that library for non-GQA graphs)::

    {"cfg": {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"[, "n_kv_heads" when grouped]},
     "nodes": {name: {"in_graph": bool[, "score": float]}},     # every node, logits included
     "edges": {name: {"score": float, "in_graph": bool}},       # EVERY edge, in or out of the circuit
     "meta": {...}}                                             # circuitft's addition (method, metric, ...)

Reading accepts files that list only some edges (unlisted edges score 0, out of the circuit), a
``null`` score (read as 0, as Xu0615/FinetuneCircuits does), and ignores neuron entries.

safetensors: tensors ``edge_scores`` [n_edges] float32 and ``edge_in_graph`` [n_edges] bool over the
real edges in canonical order (``cfg.real_edge_mask`` row-major, the order of
:attr:`GraphConfig.edge_names`), ``nodes_in_graph`` [n_forward + 1] bool, optional ``node_scores``;
metadata ``format`` = ``circuitft.graph``, ``version``, ``cfg`` (JSON) and ``meta`` (JSON).

Every reader takes an optional ``cfg``: the shape of the model the graph is used with. A file made for
another shape raises :class:`DataError` naming the first edge of the file that the model lacks (or the
first model edge the file lacks).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from circuitft.argcheck import need
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.errors import DataError
from circuitft.files import atomic_write
from circuitft.limits import check_regular_file

FORMAT = "circuitft.graph"
VERSION = "1"
REQUIRED_KEYS = ("cfg", "nodes", "edges")
_HEAD = re.compile(r"a\d+\.h\d+")
MAX_LAYERS, MAX_HEADS = 1_024, 1_024
MAX_GRAPH_CELLS = 100_000_000  # forward x backward nodes: 400 MB of float32 scores (a 70B model: 80M)


# ---- dispatch -----------------------------------------------------------------------------------------
def save_graph(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` as JSON (``.json``) or safetensors (``.safetensors``), by suffix."""
    need(graph, "graph", Graph)
    need(path, "path", str, os.PathLike)
    path = Path(path)
    if path.suffix == ".json":
        write_json(graph, path)
    elif path.suffix == ".safetensors":
        write_safetensors(graph, path)
    else:
        raise DataError(f"{path}: unknown graph file suffix {path.suffix!r} (use .json or .safetensors)")


def load_graph(path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> Graph:
    """Read a ``.json`` or ``.safetensors`` graph; with ``cfg``, check it fits that model shape."""
    need(path, "path", str, os.PathLike)
    need(cfg, "cfg", GraphConfig, none=True)
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path, cfg)
    if path.suffix == ".safetensors":
        return read_safetensors(path, cfg)
    raise DataError(f"{path}: unknown graph file suffix {path.suffix!r} (use .json or .safetensors)")


# ---- JSON ---------------------------------------------------------------------------------------------
def cfg_dict(cfg: GraphConfig) -> dict[str, Any]:
    """``cfg`` as the reference library writes it, plus ``n_kv_heads`` when grouped."""
    d: dict[str, Any] = {
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "parallel_attn_mlp": cfg.parallel_attn_mlp,
        "d_model": cfg.d_model,
    }
    if cfg.grouped:
        d["n_kv_heads"] = cfg.n_kv_heads
    return d


def write_json(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write every node and every edge (score, in_graph) in the reference JSON shape, atomically."""
    cfg = graph.cfg
    edges_in = (graph.in_graph.cpu() & cfg.real_edge_mask)[cfg.real_edge_mask].tolist()
    scores = graph.scores.detach().cpu()[cfg.real_edge_mask].tolist()
    node_scores = None if graph.node_scores is None else graph.node_scores.cpu().tolist()

    def write(f: Any) -> None:
        f.write('{"cfg": ' + json.dumps(cfg_dict(cfg)) + ',\n"nodes": {\n')
        nodes = graph.nodes_in_graph.cpu().tolist()
        nodes[-1] = True  # logits
        lines = []
        for i, name in enumerate(cfg.node_names):
            entry = {"in_graph": bool(nodes[i])}
            if node_scores is not None and not math.isnan(node_scores[i]):
                entry["score"] = node_scores[i]
            lines.append(f"{json.dumps(name)}: {json.dumps(entry)}")
        f.write(",\n".join(lines) + '\n},\n"edges": {\n')
        flag = ("false", "true")
        chunk: list[str] = []
        for i, name in enumerate(cfg.edge_names):
            chunk.append(f'"{name}": {{"score": {_num(scores[i])}, "in_graph": {flag[edges_in[i]]}}}')
            if len(chunk) == 65536:
                f.write(",\n".join(chunk) + ",\n")
                chunk = []
        f.write(",\n".join(chunk) + '\n},\n"meta": ' + json.dumps(graph.meta, default=str) + "}\n")

    def save(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)

    atomic_write(path, save)


def load_graph_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON object of a graph file, with its ``cfg``, ``nodes`` and ``edges`` objects checked.

    Any problem (missing file, invalid JSON or UTF-8, a missing or malformed top-level key) is one
    :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: graph file not found")
    check_regular_file(path, str(path))
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (Windows editors) is fine
            d = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: graph file not found") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a graph file") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object with keys cfg, nodes, edges")
    for key in REQUIRED_KEYS:
        if key not in d:
            raise DataError(f"{path}: missing top-level key {key!r} (a graph file needs cfg, nodes, edges)")
        if not isinstance(d[key], dict):
            raise DataError(f"{path}: top-level key {key!r} must be a JSON object")
    return d


def read_json(path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> Graph:
    """Read a JSON graph (ours or the reference library's); see the module docstring."""
    return graph_from_dict(load_graph_dict(path), path, cfg)


def graph_from_dict(d: dict[str, Any], path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> Graph:
    """The :class:`Graph` of an already parsed graph file ``d`` (from :func:`load_graph_dict`; ``path`` for errors)."""
    path = Path(path)
    where = f"{path}: "
    file_cfg = parse_cfg(d["cfg"], where)
    edges: dict[str, Any] = d["edges"]
    names = list(edges)
    if cfg is not None and not (cfg.same_edges(file_cfg) and same_d_model(cfg, file_cfg)):
        _raise_mismatch(where, file_cfg, cfg, names)
    graph = Graph(cfg or file_cfg)
    if names == graph.cfg.edge_names:  # every edge in canonical order (our own files): no parsing
        src, dst = graph.cfg.edge_coords
    else:
        if is_collapsed(names):
            raise DataError(
                f"{where}a collapsed graph (one edge per head, q/k/v merged): read it with "
                "circuitft.eap.collapsed.load_circuit or read_collapsed_json"
            )
        src, dst = graph.cfg.edge_index(names, where)
    scores, flags = [], []
    for name, entry in edges.items():
        if not isinstance(entry, dict) or "in_graph" not in entry or "score" not in entry:
            raise DataError(f"{where}edge {name!r} needs an object with 'score' and 'in_graph'")
        scores.append(_score(entry["score"], f"{where}edge {name!r}"))
        flags.append(_flag(entry["in_graph"], f"{where}edge {name!r}"))
    graph.scores[src, dst] = torch.tensor(scores, dtype=torch.float32)
    graph.in_graph[src, dst] = torch.tensor(flags, dtype=torch.bool)
    read_nodes(graph, d["nodes"], where)
    meta = d.get("meta", {})
    graph.meta = dict(meta) if isinstance(meta, dict) else {}
    return graph


def is_collapsed(edge_names: list[str]) -> bool:
    """Whether edge names are collapsed ones (:mod:`circuitft.eap.collapsed`): some edge ends at a head
    without ``<q>``, ``<k>`` or ``<v>``."""
    return any(_HEAD.fullmatch(name.rpartition("->")[2]) for name in edge_names)


def read_nodes(graph: Graph, nodes: dict[str, Any], where: str) -> None:
    """Set ``graph``'s circuit nodes and node scores from a file's ``nodes`` object (``where`` starts errors)."""
    lookup = graph.cfg.node_lookup
    node_scores = torch.full((graph.cfg.n_forward + 1,), math.nan)
    any_score = False
    for name, entry in nodes.items():
        i = lookup.get(name)
        if i is None:
            raise DataError(f"{where}unknown node {name!r} for a graph with {graph.cfg.describe()}")
        if isinstance(entry, bool):  # older files: {name: bool}
            graph.nodes_in_graph[i] = entry
            continue
        if not isinstance(entry, dict):
            raise DataError(f"{where}node {name!r} needs an object with 'in_graph'")
        graph.nodes_in_graph[i] = _flag(entry.get("in_graph", False), f"{where}node {name!r}")
        if entry.get("score") is not None:
            node_scores[i] = _score(entry["score"], f"{where}node {name!r}")
            any_score = True
    graph.nodes_in_graph[-1] = True
    graph.node_scores = node_scores if any_score else None


# ---- safetensors --------------------------------------------------------------------------------------
def write_safetensors(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write the compact form (real edges only; see module docstring), atomically."""

    cfg = graph.cfg
    mask = cfg.real_edge_mask
    tensors = {
        "edge_scores": graph.scores.detach().cpu()[mask].float().contiguous(),
        "edge_in_graph": (graph.in_graph.cpu() & mask)[mask].contiguous(),
        "nodes_in_graph": graph.nodes_in_graph.cpu().clone(),
    }
    if graph.node_scores is not None:
        tensors["node_scores"] = graph.node_scores.detach().cpu().float().clone()
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "cfg": json.dumps(cfg.to_dict()),
        "meta": json.dumps(graph.meta, default=str),
    }
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata))


def read_safetensors(path: str | os.PathLike[str], cfg: GraphConfig | None = None) -> Graph:
    """Read the compact form written by :func:`write_safetensors`."""

    path = Path(path)
    where = f"{path}: "
    if not path.exists():
        raise DataError(f"{path}: graph file not found")
    check_regular_file(path, str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT:
        raise DataError(f"{path}: not a circuitft graph file (metadata format {metadata.get('format')!r})")
    for key in ("edge_scores", "edge_in_graph", "nodes_in_graph"):
        if key not in tensors:
            raise DataError(f"{path}: missing tensor {key!r}")
    try:
        file_cfg = parse_cfg(json.loads(metadata.get("cfg", "")), where)
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt metadata ({err.msg})") from None
    if cfg is not None and not (cfg.same_edges(file_cfg) and same_d_model(cfg, file_cfg)):
        _raise_mismatch(where, file_cfg, cfg, file_cfg.edge_names)
    graph = Graph(cfg or file_cfg)
    mask = graph.cfg.real_edge_mask
    n_edges, n_nodes = graph.n_edges, graph.cfg.n_forward + 1
    shapes = {"edge_scores": (n_edges,), "edge_in_graph": (n_edges,), "nodes_in_graph": (n_nodes,)}
    if "node_scores" in tensors:
        shapes["node_scores"] = (n_nodes,)
    for key, shape in shapes.items():
        if tuple(tensors[key].shape) != shape:
            raise DataError(f"{path}: tensor {key!r} has shape {tuple(tensors[key].shape)}, expected {shape}")
    bad = int((~torch.isfinite(tensors["edge_scores"].float())).sum())
    if bad:
        raise DataError(f"{path}: {bad} of {n_edges} edge scores are not finite numbers (NaN or infinite)")
    graph.scores[mask] = tensors["edge_scores"].float()
    graph.in_graph[mask] = tensors["edge_in_graph"].bool()
    graph.nodes_in_graph = tensors["nodes_in_graph"].bool().clone()
    graph.nodes_in_graph[-1] = True
    graph.node_scores = tensors["node_scores"].float() if "node_scores" in tensors else None
    graph.meta = meta if isinstance(meta, dict) else {}
    return graph


# ---- checks -------------------------------------------------------------------------------------------
def check_compatible(graph: Graph, cfg: GraphConfig, where: str = "graph") -> None:
    """Raise :class:`DataError` unless ``graph`` has exactly the edges of a model shaped ``cfg``."""
    if not (cfg.same_edges(graph.cfg) and same_d_model(cfg, graph.cfg)):
        _raise_mismatch(f"{where}: ", graph.cfg, cfg, graph.cfg.edge_names)


def same_d_model(a: GraphConfig, b: GraphConfig) -> bool:
    """Whether two shapes agree on ``d_model`` (0, unknown, agrees with anything)."""
    return not a.d_model or not b.d_model or a.d_model == b.d_model


def _raise_mismatch(where: str, file_cfg: GraphConfig, cfg: GraphConfig, names: list[str]) -> None:
    """DataError naming the first edge of ``names`` absent from ``cfg`` (or the first missing one)."""
    fwd, bwd, prev = cfg.forward_lookup, cfg.backward_lookup, cfg.prev_index
    shape = f"graph has {file_cfg.describe()}, model has {cfg.describe()}"
    for name in names:
        a, _, b = name.partition("->")
        s, d = fwd.get(a), bwd.get(b)
        if s is None or d is None or s >= int(prev[d]):
            raise DataError(f"{where}edge {name!r} is not in the model's graph ({shape})")
    present = set(names)
    for name in cfg.edge_names:
        if name not in present:
            raise DataError(f"{where}the model's edge {name!r} is missing from the graph ({shape})")
    raise DataError(f"{where}graph does not match the model: d_model {file_cfg.d_model} vs {cfg.d_model}")


def parse_cfg(raw: Any, where: str) -> GraphConfig:
    """The :class:`GraphConfig` of a file's ``cfg`` object; :class:`DataError` starting with ``where``."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}'cfg' must be an object with n_layers, n_heads, parallel_attn_mlp, d_model")
    for key in ("n_layers", "n_heads"):
        if key not in raw:
            raise DataError(f"{where}'cfg' lacks {key!r}")
    for key, top in (
        ("n_layers", MAX_LAYERS),
        ("n_heads", MAX_HEADS),
        ("n_kv_heads", MAX_HEADS),
        ("d_model", None),
    ):
        value = raw.get(key)
        if value is None and key in ("n_kv_heads", "d_model"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "d_model" else 1):
            raise DataError(f"{where}'cfg' {key} must be a positive integer, got {value!r}")
        if top is not None and value > top:
            raise DataError(f"{where}'cfg' {key} is {value:,}; a graph may have at most {top:,}")
    if not isinstance(raw.get("parallel_attn_mlp", False), bool):
        raise DataError(
            f"{where}'cfg' parallel_attn_mlp must be true or false, got {raw['parallel_attn_mlp']!r}"
        )
    try:
        cfg = GraphConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}bad 'cfg' ({err})") from None
    cells = cfg.n_forward * cfg.n_backward
    if cells > MAX_GRAPH_CELLS:
        raise DataError(
            f"{where}'cfg' describes {cfg.describe()}: {cells:,} possible edges, more than the {MAX_GRAPH_CELLS:,} "
            "circuitft reads (about 500 MB); refused before reading it"
        )
    return cfg


def _score(value: Any, where: str) -> float:
    """A score from a JSON file: a finite number, or null (read as 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: score must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where}: score must be a finite number, got {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    """An ``in_graph`` from a JSON file: true or false (a string "false" is not false)."""
    if not isinstance(value, bool):
        raise DataError(f"{where}: in_graph must be true or false, got {value!r}")
    return value


def _num(x: float) -> str:
    """A float as JSON text (``NaN`` / ``Infinity`` as Python's json module writes them)."""
    if math.isfinite(x):
        return repr(x)
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
