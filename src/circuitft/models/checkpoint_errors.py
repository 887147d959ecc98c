"""A checkpoint that cannot be read: one line of our own, naming the file and the readable ones beside it.

PyTorch's own message for a file that is not a plain-tensor checkpoint suggests turning ``weights_only``
off (loading arbitrary pickled code); circuitft never does that and never repeats the advice.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from circuitft.errors import ConfigError
from circuitft.files import atomic_write_text
from circuitft.owned import MARKER, kind_of

SIZES = "checkpoint_bytes"  # key of the run marker: each checkpoint's size as written (AtomicCheckpointIO)


def record_size(path: Path, size: int) -> None:
    """Note checkpoint ``path``'s size in its run folder's marker (so that a copy cut short is reported as
    "N of M bytes"); nothing when the checkpoint folder does not lie in a circuitft run folder."""
    run = path.parent.parent
    if kind_of(run) != "run":
        return
    try:
        marker = json.loads((run / MARKER).read_text(encoding="utf-8"))
        sizes = marker.get(SIZES) if isinstance(marker.get(SIZES), dict) else {}
        sizes = {k: v for k, v in sizes.items() if (path.parent / k).exists()}
        sizes[path.name] = size
        marker[SIZES] = sizes
        atomic_write_text(run / MARKER, json.dumps(marker) + "\n")
    except Exception:  # noqa: BLE001 - only a better message later depends on it
        pass


def recorded_size(path: Path) -> int | None:
    """The size :func:`record_size` noted for checkpoint ``path``, or None."""
    try:
        marker = json.loads((path.parent.parent / MARKER).read_text(encoding="utf-8"))
        size = marker[SIZES][path.name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def readable_neighbours(path: Path, limit: int = 5) -> list[Path]:
    """Other ``*.ckpt`` files in ``path``'s folder that load (newest first; at most ``4 * limit`` tried)."""
    found = []
    try:
        candidates = sorted(path.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    for p in candidates[: 4 * limit]:
        if p.resolve() == path.resolve():
            continue
        if loads(p):
            found.append(p)
        if len(found) >= limit:
            break
    return found


def loads(path: Path) -> bool:
    """Whether ``path`` loads as circuitft loads checkpoints (``weights_only``; memory-mapped, so cheap)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any failure means "does not load"
        return False
    return True


def _reason(path: Path, err: BaseException) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "empty file"
    if size is not None and not zipfile.is_zipfile(path) and _starts_as_zip(path):
        expected = recorded_size(path)
        if expected is not None and expected > size:
            return f"truncated or incomplete ({size:,} of {expected:,} bytes)"
        return f"truncated or incomplete ({size:,} bytes; the end of the archive is missing)"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
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


def _starts_as_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


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
