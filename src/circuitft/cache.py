"""circuitft's own cache folder (built tokenizers, the embedded model converted once): where it is, and
one-line errors that name it when it cannot be used.

The folder is ``$CIRCUITFT_CACHE``, else ``~/.cache/circuitft``. An unwritable home, or
``CIRCUITFT_CACHE`` naming a file, is reported as a problem with the model cache that says how to move it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CIRCUITFT_CACHE"


def cache_dir() -> Path:
    """circuitft's cache folder: ``$CIRCUITFT_CACHE`` or ``~/.cache/circuitft``."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "circuitft").expanduser()


def cache_error(err: OSError) -> str | None:
    """The one-line message for ``err`` when it is about a path inside the cache folder, else None."""
    try:
        cache = cache_dir().absolute()
    except (RuntimeError, OSError):  # no home folder at all
        return f"cannot find a home folder for the model cache; set {ENV} to a writable folder"
    for name in (err.filename, getattr(err, "filename2", None)):
        if not name:
            continue
        path = Path(os.fsdecode(name)).absolute()
        if path == cache or cache in path.parents or (path in cache.parents and len(path.parts) > 1):
            msg = f"cannot use the model cache folder {cache} ({path}: {err.strerror or err})"
            if os.environ.get(ENV):
                return f"{msg}; {ENV}={os.environ[ENV]} must name a writable folder"
            return f"{msg}; set {ENV} to a writable folder to keep the cache there"
    return None
