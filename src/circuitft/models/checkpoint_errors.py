"""A checkpoint that cannot be read: one line of our own, naming the file and the readable ones beside it.

PyTorch's own message for a file that is not a plain-tensor checkpoint suggests turning ``weights_only``
off (loading arbitrary pickled code); circuitft never does that and never repeats the advice.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from circuitft.errors import ConfigError


def readable_neighbours(path: Path, limit: int = 5) -> list[Path]:
    """Other ``*.ckpt`` files in ``path``'s folder that are complete archives (newest first)."""
    found = []
    try:
        candidates = sorted(path.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    for p in candidates:
        if p.resolve() == path.resolve():
            continue
        try:
            with zipfile.ZipFile(p) as z:
                if z.testzip() is None:
                    found.append(p)
        except (OSError, zipfile.BadZipFile, RuntimeError):
            continue
        if len(found) >= limit:
            break
    return found


def _reason(path: Path, err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "empty file"
    if not zipfile.is_zipfile(path):
        return "not a PyTorch checkpoint archive; truncated or another kind of file"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return "corrupt archive"
    if bad is not None:
        return f"corrupt archive (member {bad})"
    return "holds objects other than tensors and plain values, which circuitft does not load"


def unreadable_checkpoint(path: str | Path, err: BaseException) -> ConfigError:
    """The one-line error for checkpoint ``path`` that ``torch.load(weights_only=True)`` refused."""
    path = Path(path)
    others = readable_neighbours(path)
    if others:
        hint = "readable checkpoints beside it: " + ", ".join(p.name for p in others)
        hint += f" (resume from one with --ckpt_path {others[0]})"
    else:
        hint = "no readable checkpoint beside it"
    return ConfigError(f"checkpoint {path} cannot be read ({_reason(path, err)}); {hint}")
