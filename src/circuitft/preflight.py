"""Cheap availability checks made before any heavy work: is a model there, can a data source be read?

Each check returns ``None`` or a one-line problem. :func:`model_problem` answers for hub names from the
local Hugging Face cache alone (no network, no transformers import), so ``circuit`` and ``sweep --dry_run``
report a missing model at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from circuitft.errors import DataError, ModelSpecError
from circuitft.hub import download_allowed, how_to_get, hub_cached, is_hub_name


def model_problem(spec: str, full: bool = False) -> str | None:
    """Why ``spec`` cannot be loaded, or None. Hub names and folders are always checked; with ``full``
    the other names are checked against the built-in ones (this imports transformers)."""
    path = Path(spec).expanduser()
    if is_hub_name(spec):
        return None if hub_cached(spec) or download_allowed() else how_to_get(spec)
    if path.exists():
        return None if (path / "config.json").is_file() else f"model folder {path} has no config.json"
    if spec.startswith((".", "/", "~", os.sep)):
        return f"model folder {spec} does not exist"
    if full:
        # transformers comes with it: only for the full check (the quick one fails a command in a moment)
        from circuitft.models.loading import EMBEDDED, cache_dir, gguf_path, model_specs

        if spec == EMBEDDED and not (cache_dir() / EMBEDDED / "config.json").is_file():
            try:
                gguf_path()
            except ModelSpecError as err:
                return str(err)
        if spec not in model_specs():
            return (
                f"unknown model spec {spec!r}: not a built-in ({', '.join(model_specs())}), an existing "
                "folder, or a hub name like 'owner/name'"
            )
    return None


def data_problem(source: str) -> str | None:
    """Why the task data ``source`` (a file or folder; ``hf:`` names are not checked) cannot be read."""
    if source.startswith("hf:"):
        return None
    from circuitft.data.sources import load_rows  # torch comes with it: a bad model fails before this

    try:
        load_rows(source)
    except DataError as err:
        return str(err)
    return None
