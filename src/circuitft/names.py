"""Names that become paths: task names, run names, output sub-folders.

:func:`check_name` accepts letters, digits and ``_ - . + ~`` (no path separator, no leading dot, not
empty); :func:`inside` joins path parts under a root and refuses a result that resolves outside it (a
symlink pointing away included); :func:`slug` turns any text (a run or task name) into a file-name-safe
form for the report's figure and page names. The first two raise a one-line :class:`ConfigError` naming the config key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from circuitft.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_\-.+~]+")
MAX_LEN = 200


def check_name(value: object, key: str) -> str:
    """``value`` if it is a safe file name, else a ConfigError naming ``key`` (e.g. ``data.tasks[0].name``)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: a name must be non-empty text, got {value!r}")
    if not _NAME.fullmatch(value) or value.startswith("."):
        raise ConfigError(
            f"{key}: {value!r} is not a valid name (use letters, digits and _-.+~ only, "
            "no path separators, not starting with a dot)"
        )
    if len(value) > MAX_LEN:
        raise ConfigError(f"{key}: name longer than {MAX_LEN} characters ({len(value)})")
    return value


def inside(root: str | os.PathLike[str], *parts: str, key: str = "path") -> Path:
    """``root / parts...``, refused (ConfigError naming ``key``) if it resolves outside ``root``."""
    base = Path(root)
    path = base.joinpath(*parts)
    real_root, real = base.resolve(), path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ConfigError(f"{key}: {path} lies outside {base}")
    return path


def slug(text: str) -> str:
    """A file-name-safe form of a run or task name (the report's figure and explorer page names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
