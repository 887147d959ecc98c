"""Edge attribution patching with integrated gradients (EAP-IG) on circuitft models.

- :mod:`circuitft.eap.graph`: :class:`Graph` / :class:`GraphConfig`, the edge graph as dense tensors
- :mod:`circuitft.eap.select`: choosing a circuit (top-n, top fraction, threshold, greedy) and pruning;
  :data:`DEFAULT_TOP_FRAC` (here) is the circuit size wherever none is given
- :mod:`circuitft.eap.topk`: the one top-k (largest first, ties by position) every ranking uses
- :mod:`circuitft.eap.io`: reference-compatible JSON and compact safetensors files
- :mod:`circuitft.eap.overlap`: Jaccard, edge change, node change between circuits
- :mod:`circuitft.eap.collapsed`: graphs with q/k/v merged per head (FinetuneCircuits' files)
- :mod:`circuitft.eap.attribute`, :mod:`circuitft.eap.evaluate`, :mod:`circuitft.eap.metrics`: scoring
  edges and evaluating circuits on a model, on the forward-pass toolkit of :mod:`circuitft.eap.forward`
- :mod:`circuitft.eap.settings`: :class:`CircuitSettings`, the attribution settings and their checks
- :mod:`circuitft.eap.pipeline`: :func:`find_circuit`, attribute, select, evaluate and summarise in one call

Names are imported lazily on first use (``from circuitft.eap import Graph``), so importing the package is
cheap and does not need the attribution modules. ``circuitft.eap.select`` and ``circuitft.eap.overlap``
are the submodules; their main functions are exported as ``select_circuit`` and ``circuit_overlap``.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_TOP_FRAC = 0.05  # the circuit size when none is given: 5% of the edges, as the prior work chose

_EXPORTS: dict[str, str | tuple[str, str]] = {
    "Graph": "circuitft.eap.graph",
    "GraphConfig": "circuitft.eap.graph",
    "select_circuit": ("circuitft.eap.select", "select"),
    "prune": "circuitft.eap.select",
    "apply_topn": "circuitft.eap.select",
    "apply_threshold": "circuitft.eap.select",
    "apply_greedy": "circuitft.eap.select",
    "load_graph": "circuitft.eap.io",
    "save_graph": "circuitft.eap.io",
    "read_json": "circuitft.eap.io",
    "write_json": "circuitft.eap.io",
    "read_safetensors": "circuitft.eap.io",
    "write_safetensors": "circuitft.eap.io",
    "check_compatible": "circuitft.eap.io",
    "CollapsedGraph": "circuitft.eap.collapsed",
    "collapse": "circuitft.eap.collapsed",
    "load_circuit": "circuitft.eap.collapsed",
    "read_collapsed_json": "circuitft.eap.collapsed",
    "write_collapsed_json": "circuitft.eap.collapsed",
    "circuit_overlap": ("circuitft.eap.overlap", "overlap"),
    "jaccard": "circuitft.eap.overlap",
    "edge_jaccard": "circuitft.eap.overlap",
    "node_jaccard": "circuitft.eap.overlap",
    "top_k_edges": "circuitft.eap.overlap",
    "edge_change": "circuitft.eap.overlap",
    "node_change": "circuitft.eap.overlap",
    "attribute": "circuitft.eap.attribute",
    "METHODS": "circuitft.eap.attribute",
    "evaluate": "circuitft.eap.evaluate",
    "evaluate_circuits": "circuitft.eap.evaluate",
    "CircuitSettings": "circuitft.eap.settings",
    "find_circuit": "circuitft.eap.pipeline",
    "CircuitResult": "circuitft.eap.pipeline",
    "faithfulness": "circuitft.eap.evaluate",
    "METRICS": "circuitft.eap.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'circuitft.eap' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
