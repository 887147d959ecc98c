"""circuitft: sequential LoRA fine-tuning with EAP-IG circuit discovery at every checkpoint.

The Python API (:mod:`circuitft.api`) is importable from the top level, lazily, so ``import circuitft``
stays cheap::

    import circuitft as cf
    model = cf.load("smollm2-135m")
    pairs = cf.make_pairs("IOI", model, n=16)
    circuit = cf.find_circuit(model, pairs)
    circuit.top_edges(10)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "load": "circuitft.api",
    "make_pairs": "circuitft.api",
    "load_pairs": "circuitft.api",
    "find_circuit": "circuitft.api",
    "evaluate_circuit": "circuitft.api",
    "hold_out": "circuitft.api",
    "compare": "circuitft.api",
    "draw": "circuitft.api",
    "Graph": "circuitft.eap.graph",
    "PromptPairs": "circuitft.data.pairs",
    "load_graph": "circuitft.eap.io",
    "save_graph": "circuitft.eap.io",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'circuitft' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
