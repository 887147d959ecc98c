"""Hub models: whether the local Hugging Face cache holds one, and whether circuitft may download it.

Imports neither torch nor transformers, so the checks made before heavy work (:mod:`circuitft.preflight`)
stay quick.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache


def how_to_get(spec: str) -> str:
    """The one-line advice for a hub model that is not in the local cache."""
    return (
        f"model {spec!r} is not in the local Hugging Face cache: download it first with "
        f"`hf download {spec}` (or set CIRCUITFT_DOWNLOAD=1 to let circuitft download it, or HF_HOME to "
        "the cache that holds it), or give a local model folder"
    )


def download_allowed() -> bool:
    """``CIRCUITFT_DOWNLOAD=1`` and not ``HF_HUB_OFFLINE``: otherwise hub models come from the cache only."""
    on = ("1", "true", "yes", "on")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in on
    return not offline and os.environ.get("CIRCUITFT_DOWNLOAD", "").strip().lower() in on


def is_hub_name(spec: str) -> bool:
    """``owner/name`` that is not an existing path."""
    return (
        not spec.startswith((".", "/", "~", os.sep))
        and spec.count("/") == 1
        and all(spec.split("/"))
        and not Path(spec).expanduser().exists()
    )


def hub_cached(spec: str) -> bool:
    """Whether the local Hugging Face cache holds ``spec``'s ``config.json``."""
    return isinstance(try_to_load_from_cache(spec, "config.json"), str)
