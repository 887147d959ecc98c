"""Model specs -> Hugging Face model + tokenizer (offline), and the analysis form (merged copy / bridge).

The names below load on first use (PEP 562): importing a light submodule such as
:mod:`circuitft.models.architectures` (as the EAP engine and ``circuitft fit --help`` do) does not import
transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_MODEL = "smollm2-135m"  # the embedded SmolLM2-135M-Instruct: the default of every command
_WHERE = {
    "BridgeHooks": "bridge",
    "bridge_hooks": "bridge",
    "to_bridge": "bridge",
    "LoadedModel": "loading",
    "cache_dir": "loading",
    "load_model": "loading",
    "load_tokenizer": "loading",
    "model_specs": "loading",
    "merged_copy": "merge",
    "wrap_lora": "lora",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'circuitft.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"circuitft.models.{_WHERE[name]}"), name)


__all__ = [
    "DEFAULT_MODEL",
    "BridgeHooks",
    "LoadedModel",
    "bridge_hooks",
    "cache_dir",
    "load_model",
    "load_tokenizer",
    "merged_copy",
    "model_specs",
    "to_bridge",
    "wrap_lora",
]
