"""Task data: rows (strings), generators, file sources, PromptPairs (tokenized) and the task stream.

The names below load on first use (PEP 562), so a light submodule such as :mod:`circuitft.data.rows` (what
``circuitft tasks --help`` needs) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"PairBatch": "pairs", "PromptPairs": "pairs", "tokenize_pairs": "pairs", "PromptRow": "rows"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'circuitft.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"circuitft.data.{_WHERE[name]}"), name)


__all__ = ["PairBatch", "PromptPairs", "PromptRow", "tokenize_pairs"]
