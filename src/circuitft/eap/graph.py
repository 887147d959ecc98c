"""The edge graph of a transformer, stored as dense tensors (never one Python object per edge).

Layout (``../shared/notes/eap-ig.md`` section 1, extended to grouped-query attention):

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

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import torch


@dataclass(frozen=True)
class GraphConfig:
    """Shape of a model's edge graph."""

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None  # None or == n_heads: no grouped-query attention
    parallel_attn_mlp: bool = False
    d_model: int = 0

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
        """Shape of a Hugging Face model config (GPT-2, GPT-NeoX/Pythia, Llama, Qwen2, Mistral, ...)."""
        n_layers = _first(config, "num_hidden_layers", "n_layer")
        n_heads = _first(config, "num_attention_heads", "n_head")
        n_kv = getattr(config, "num_key_value_heads", None) or n_heads
        parallel = bool(getattr(config, "use_parallel_residual", False) or config.model_type == "gptj")
        d_model = _first(config, "hidden_size", "n_embd")
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


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"model config has none of {names}")


class Graph:
    """A model's edge graph with scores and a circuit, as dense tensors.

    - ``scores``: [n_forward, n_backward] float32, the attribution score of each edge (0 off the real mask)
    - ``in_graph``: [n_forward, n_backward] bool, the circuit's edges (always within ``cfg.real_edge_mask``)
    - ``nodes_in_graph``: [n_forward + 1] bool, the circuit's nodes in :attr:`GraphConfig.node_names` order
    - ``meta``: how the scores were made (method, metric, ig_steps, step convention, ...)
    """

    def __init__(self, cfg: GraphConfig) -> None:
        self.cfg = cfg
        self.scores = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.float32)
        self.in_graph = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.bool)
        self.nodes_in_graph = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
        self.meta: dict[str, Any] = {}

    @classmethod
    def from_model(cls, model: Any) -> Graph:
        """An empty graph shaped like a Hugging Face model (or anything with ``.config``)."""
        return cls(GraphConfig.from_hf_config(model.config))

    @property
    def n_edges(self) -> int:
        """Number of real edges."""
        return self.cfg.n_edges

    def full(self) -> Graph:
        """Put every real edge and every node in the circuit (the unpruned model); returns self."""
        self.in_graph = self.cfg.real_edge_mask.clone()
        self.nodes_in_graph[:] = True
        return self
