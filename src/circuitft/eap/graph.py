"""The edge graph of a transformer, stored as dense tensors (never one Python object per edge).

Layout (the reference EAP-IG library's graph, extended to grouped-query attention; docs/engine.md):

- Forward (source) index: ``input`` 0; head (l, h) ``1 + l*(H+1) + h``; MLP l ``1 + l*(H+1) + H``.
- Backward (destination) index, ``W = H + 2G + 1`` slots per layer: head (l, h) q ``l*W + h``;
  key/value group (l, g) k ``l*W + H + g`` and v ``l*W + H + G + g``; MLP l ``l*W + H + 2G``;
  logits ``L*W`` (last). With G == H (no GQA) this is the reference library's layout exactly.
- ``prev_index(v)``: sources upstream of destination v are rows ``[0, prev_index(v))`` of column v.
- Names: nodes ``input``, ``a{l}.h{h}``, ``m{l}``, ``logits``; destinations ``a{l}.h{h}<q>``, and
  ``a{l}.h{g}<k>`` / ``<v>`` without GQA or ``a{l}.g{g}<k>`` / ``<v>`` (one per key/value group) with GQA;
  edges ``{src}->{dst}``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import torch

from circuitft.eap.topk import top_k
from circuitft.errors import DataError
from circuitft.models.architectures import arch_spec, model_shape


@dataclass(frozen=True)
class GraphConfig:
    """Shape of a model's edge graph."""

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None  # None or == n_heads: no grouped-query attention
    parallel_attn_mlp: bool = False
    d_model: int = 0

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(
                f"a graph needs n_layers >= 1 and n_heads >= 1, got {self.n_layers}, {self.n_heads}"
            )
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")

    @property
    def groups(self) -> int:
        """Key/value destinations per layer (== n_heads without GQA)."""
        return self.n_kv_heads or self.n_heads

    @property
    def grouped(self) -> bool:
        """Whether k/v destinations are per key/value group rather than per head."""
        return self.groups != self.n_heads

    @property
    def layer_width(self) -> int:
        """Destination slots per layer: H q heads, G k groups, G v groups, 1 MLP."""
        return self.n_heads + 2 * self.groups + 1

    @property
    def n_forward(self) -> int:
        """Number of sources: input, every head, every MLP."""
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        """Number of destinations: per-head q, per-group k and v, every MLP, logits."""
        return self.n_layers * self.layer_width + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored as ``cfg`` in graph files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphConfig:
        """Inverse of :meth:`to_dict`; also accepts the reference library's ``cfg`` (no ``n_kv_heads``)."""
        return cls(
            n_layers=int(d["n_layers"]),
            n_heads=int(d["n_heads"]),
            n_kv_heads=None if d.get("n_kv_heads") in (None, d["n_heads"]) else int(d["n_kv_heads"]),
            parallel_attn_mlp=bool(d.get("parallel_attn_mlp", False)),
            d_model=int(d.get("d_model", 0)),
        )

    @classmethod
    def from_hf_config(cls, config: Any) -> GraphConfig:
        """Shape of a Hugging Face model config of a supported architecture (see
        :mod:`circuitft.models.architectures`); another model type is a one-line ConfigError."""

        parallel = arch_spec(config).is_parallel(config)
        n_layers, n_heads, n_kv, d_model = model_shape(config)
        return cls(n_layers, n_heads, None if n_kv == n_heads else n_kv, parallel, d_model)

    # ---- index arithmetic -------------------------------------------------------------------------
    def head_index(self, layer: int, head: int) -> int:
        """Forward index of head (layer, head)."""
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_index(self, layer: int) -> int:
        """Forward index of MLP ``layer``."""
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def q_index(self, layer: int, head: int) -> int:
        """Backward index of head (layer, head)'s query input."""
        return layer * self.layer_width + head

    def k_index(self, layer: int, group: int) -> int:
        """Backward index of key/value group (layer, group)'s key input."""
        return layer * self.layer_width + self.n_heads + group

    def v_index(self, layer: int, group: int) -> int:
        """Backward index of key/value group (layer, group)'s value input."""
        return layer * self.layer_width + self.n_heads + self.groups + group

    def mlp_in_index(self, layer: int) -> int:
        """Backward index of MLP ``layer``'s input."""
        return layer * self.layer_width + self.n_heads + 2 * self.groups

    @property
    def logits_index(self) -> int:
        """Backward index of the logits."""
        return self.n_backward - 1

    def attn_prev(self, layer: int) -> int:
        """Sources upstream of any attention input of ``layer``."""
        return 1 + layer * (self.n_heads + 1)

    def mlp_prev(self, layer: int) -> int:
        """Sources upstream of MLP ``layer`` (its own layer's heads too, unless attention/MLP are parallel)."""
        return self.attn_prev(layer) + (0 if self.parallel_attn_mlp else self.n_heads)

    # ---- derived tensors and names -----------------------------------------------------------------
    @cached_property
    def prev_index(self) -> torch.Tensor:
        """[n_backward] long: sources upstream of each destination."""
        prev = torch.empty(self.n_backward, dtype=torch.long)
        for layer in range(self.n_layers):
            start = layer * self.layer_width
            prev[start : start + self.layer_width - 1] = self.attn_prev(layer)
            prev[start + self.layer_width - 1] = self.mlp_prev(layer)
        prev[-1] = self.n_forward
        return prev

    @cached_property
    def real_edge_mask(self) -> torch.Tensor:
        """[n_forward, n_backward] bool: which (source, destination) pairs are edges."""
        return torch.arange(self.n_forward)[:, None] < self.prev_index[None, :]

    @property
    def n_edges(self) -> int:
        """Number of real edges."""
        return int(self.prev_index.sum())

    @cached_property
    def forward_names(self) -> list[str]:
        """Source node names in forward-index order."""
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def backward_names(self) -> list[str]:
        """Destination names in backward-index order (head inputs carry ``<q>``, ``<k>``, ``<v>``)."""
        kv = "g" if self.grouped else "h"
        names: list[str] = []
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}<q>" for h in range(self.n_heads)]
            names += [f"a{layer}.{kv}{g}<k>" for g in range(self.groups)]
            names += [f"a{layer}.{kv}{g}<v>" for g in range(self.groups)]
            names.append(f"m{layer}")
        names.append("logits")
        return names

    @cached_property
    def node_names(self) -> list[str]:
        """All node names: the sources, then ``logits``."""
        return [*self.forward_names, "logits"]

    @cached_property
    def destination_node(self) -> torch.Tensor:
        """[n_backward] long: the node index (into :attr:`node_names`) each destination belongs to.

        q inputs belong to their head; grouped k/v inputs belong to the group's first head.
        """
        node = torch.empty(self.n_backward, dtype=torch.long)
        per_group = self.n_heads // self.groups
        for layer in range(self.n_layers):
            for h in range(self.n_heads):
                node[self.q_index(layer, h)] = self.head_index(layer, h)
            for g in range(self.groups):
                node[self.k_index(layer, g)] = self.head_index(layer, g * per_group)
                node[self.v_index(layer, g)] = self.head_index(layer, g * per_group)
            node[self.mlp_in_index(layer)] = self.mlp_index(layer)
        node[-1] = self.n_forward
        return node

    def edge_name(self, src: int, dst: int) -> str:
        """Name of edge (forward index ``src``, backward index ``dst``)."""
        return f"{self.forward_names[src]}->{self.backward_names[dst]}"

    # ---- grouped-query ownership --------------------------------------------------------------------
    @cached_property
    def head_group(self) -> torch.Tensor:
        """[n_heads] long: the key/value group each query head reads (``h // (H/G)``, as HF ``repeat_kv``)."""
        return torch.arange(self.n_heads) // (self.n_heads // self.groups)

    @cached_property
    def destination_owners(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dst, node)`` pairs: destination ``dst`` is an input of node ``node`` (into :attr:`node_names`).

        Unlike :attr:`destination_node`, a grouped k/v destination is listed once for *every* head of its
        group (all of them read it). Without GQA this is exactly one pair per destination.
        """
        dst, node = [], []
        for layer in range(self.n_layers):
            for h in range(self.n_heads):
                g = int(self.head_group[h])
                for d in (self.q_index(layer, h), self.k_index(layer, g), self.v_index(layer, g)):
                    dst.append(d)
                    node.append(self.head_index(layer, h))
            dst.append(self.mlp_in_index(layer))
            node.append(self.mlp_index(layer))
        dst.append(self.logits_index)
        node.append(self.n_forward)
        return torch.tensor(dst, dtype=torch.long), torch.tensor(node, dtype=torch.long)

    # ---- real edges in canonical order and name lookup -----------------------------------------------
    @cached_property
    def edge_coords(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(src, dst)`` long tensors of the real edges in canonical order (row-major over the mask).

        ``graph.scores[graph.cfg.real_edge_mask]`` lists the scores in this same order.
        """
        src, dst = self.real_edge_mask.nonzero(as_tuple=True)
        return src, dst

    @cached_property
    def edge_names(self) -> list[str]:
        """Names of the real edges in canonical order (built once per shape; ~0.5 s for 1.6M edges)."""
        bwd = self.backward_names
        # prev_index is non-decreasing, so source s feeds exactly the destinations from its first one on.
        first = torch.searchsorted(self.prev_index, torch.arange(self.n_forward), right=True).tolist()
        names: list[str] = []
        for s, name in enumerate(self.forward_names):
            prefix = name + "->"
            names += [prefix + b for b in bwd[first[s] :]]
        return names

    @cached_property
    def forward_lookup(self) -> dict[str, int]:
        """Source name -> forward index."""
        return {name: i for i, name in enumerate(self.forward_names)}

    @cached_property
    def backward_lookup(self) -> dict[str, int]:
        """Destination name -> backward index."""
        return {name: i for i, name in enumerate(self.backward_names)}

    @cached_property
    def node_lookup(self) -> dict[str, int]:
        """Node name -> index into :attr:`node_names`."""
        return {name: i for i, name in enumerate(self.node_names)}

    def edge_index(self, names: list[str], where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """``(src, dst)`` indices of edge ``names``; :class:`DataError` naming the first unknown one."""
        fwd, bwd = self.forward_lookup, self.backward_lookup
        s_list: list[int] = [0] * len(names)
        d_list: list[int] = [0] * len(names)
        for i, name in enumerate(names):
            a, sep, b = name.partition("->")
            s, d = fwd.get(a), bwd.get(b)
            if not sep or s is None or d is None:
                raise DataError(f"{where}unknown edge {name!r} for a graph with {self.describe()}")
            s_list[i], d_list[i] = s, d
        src, dst = torch.tensor(s_list, dtype=torch.long), torch.tensor(d_list, dtype=torch.long)
        bad = (src >= self.prev_index[dst]).nonzero()
        if len(bad):
            name = names[int(bad[0])]
            raise DataError(f"{where}unknown edge {name!r} (its source is not upstream of its destination)")
        return src, dst

    def describe(self) -> str:
        """The shape in words, for error messages."""
        kv = f", n_kv_heads={self.n_kv_heads}" if self.grouped else ""
        return f"n_layers={self.n_layers}, n_heads={self.n_heads}{kv}, parallel_attn_mlp={self.parallel_attn_mlp}"

    def same_edges(self, other: GraphConfig) -> bool:
        """Whether ``other`` has exactly the same edges (``d_model`` is not compared)."""
        mine = (self.n_layers, self.n_heads, self.groups, self.parallel_attn_mlp)
        theirs = (other.n_layers, other.n_heads, other.groups, other.parallel_attn_mlp)
        return mine == theirs


class Graph:
    """A model's edge graph with scores and a circuit, as dense tensors.

    - ``scores``: [n_forward, n_backward] float32, the attribution score of each edge (0 off the real mask)
    - ``in_graph``: [n_forward, n_backward] bool, the circuit's edges (always within ``cfg.real_edge_mask``)
    - ``nodes_in_graph``: [n_forward + 1] bool, the circuit's nodes in :attr:`GraphConfig.node_names` order
      (the last one, ``logits``, is always in)
    - ``node_scores``: optional [n_forward + 1] float32 node scores (NaN where unscored), else None
    - ``meta``: how the scores were made (method, metric, ig_steps, step convention, ...)

    Choosing a circuit and reading or writing files are free functions of modules built on this one
    (:mod:`circuitft.eap.select`: ``select``, ``apply_topn``, ``prune``, ...; :mod:`circuitft.eap.io`:
    ``load_graph``, ``save_graph``, ``write_json``, ...), so that this module depends on none of them.
    """

    def __init__(self, cfg: GraphConfig) -> None:
        self.cfg = cfg
        self.scores = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.float32)
        self.in_graph = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.bool)
        self.nodes_in_graph = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
        self.nodes_in_graph[-1] = True  # logits
        self.node_scores: torch.Tensor | None = None
        self.meta: dict[str, Any] = {}

    @classmethod
    def from_model(cls, model: Any) -> Graph:
        """An empty graph shaped like a Hugging Face model (or anything with ``.config``)."""
        return cls(GraphConfig.from_hf_config(model.config))

    def __repr__(self) -> str:
        return (
            f"Graph({self.cfg.describe()}, edges {self.count_edges()}/{self.n_edges}, "
            f"nodes {self.count_nodes()}/{self.cfg.n_forward})"
        )

    @property
    def n_edges(self) -> int:
        """Number of real edges."""
        return self.cfg.n_edges

    @property
    def real_edge_mask(self) -> torch.Tensor:
        """[n_forward, n_backward] bool: which (source, destination) pairs are edges."""
        return self.cfg.real_edge_mask

    def count_edges(self) -> int:
        """Number of edges in the circuit."""
        return int((self.in_graph.cpu() & self.cfg.real_edge_mask).sum())

    def count_nodes(self) -> int:
        """Number of nodes in the circuit, not counting ``logits`` (as the reference library counts)."""
        return int(self.nodes_in_graph[: self.cfg.n_forward].sum())

    def full(self) -> Graph:
        """Put every real edge and every node in the circuit (the unpruned model); returns self."""
        self.in_graph = self.cfg.real_edge_mask.clone()
        self.nodes_in_graph[:] = True
        return self

    def reset(self) -> Graph:
        """Empty the circuit (scores and meta are kept; ``logits`` stays in); returns self."""
        self.in_graph.zero_()
        self.nodes_in_graph.zero_()
        self.nodes_in_graph[-1] = True
        return self

    def copy(self) -> Graph:
        """An independent copy (tensors cloned, meta deep-copied)."""

        other = Graph(self.cfg)
        other.scores, other.in_graph = self.scores.clone(), self.in_graph.clone()
        other.nodes_in_graph = self.nodes_in_graph.clone()
        other.node_scores = None if self.node_scores is None else self.node_scores.clone()
        other.meta = copy.deepcopy(self.meta)
        return other

    # ---- edges by name ------------------------------------------------------------------------------
    def edge_scores(self) -> torch.Tensor:
        """[n_edges] scores of the real edges in canonical order (:attr:`GraphConfig.edge_names`)."""
        return self.scores.detach().cpu()[self.cfg.real_edge_mask]

    def edges_in_graph(self) -> list[str]:
        """Names of the circuit's edges, in canonical order."""
        src, dst = (self.in_graph.cpu() & self.cfg.real_edge_mask).nonzero(as_tuple=True)
        fwd, bwd = self.cfg.forward_names, self.cfg.backward_names
        return [f"{fwd[s]}->{bwd[d]}" for s, d in zip(src.tolist(), dst.tolist(), strict=True)]

    def nodes_in_graph_names(self) -> list[str]:
        """Names of the circuit's nodes (``logits`` included)."""
        return [self.cfg.node_names[i] for i in self.nodes_in_graph.nonzero().flatten().tolist()]

    def score_of(self, names: str | list[str]) -> torch.Tensor:
        """Scores of edges given by name (:class:`DataError` on an unknown name)."""
        src, dst = self.cfg.edge_index([names] if isinstance(names, str) else list(names))
        return self.scores[src, dst]

    def top_edges(self, n: int = 20, *, circuit_only: bool = False) -> Any:
        """The ``n`` strongest edges by ``|score|`` as a pandas DataFrame, strongest first.

        Columns: ``edge`` (reference name), ``source``, ``destination``, ``score`` and ``in_circuit``. Ties
        keep canonical edge order; ``circuit_only`` ranks only the circuit's edges.
        """

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"top_edges: n must be a positive integer, got {n!r}")
        mask = self.cfg.real_edge_mask & (self.in_graph.cpu() if circuit_only else True)
        src, dst = mask.nonzero(as_tuple=True)
        scores = self.scores.detach().cpu().float()[src, dst]
        order = top_k(scores.abs(), n)
        fwd, bwd = self.cfg.forward_names, self.cfg.backward_names
        rows = []
        for i in order.tolist():
            s, d = int(src[i]), int(dst[i])
            rows.append((f"{fwd[s]}->{bwd[d]}", fwd[s], bwd[d], float(scores[i]), bool(self.in_graph[s, d])))
        return pd.DataFrame(rows, columns=["edge", "source", "destination", "score", "in_circuit"])
