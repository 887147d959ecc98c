"""Out of disk space: recognise it wherever it comes from and say it in one line.

ENOSPC reaches circuitft as an ``OSError`` (errno 28, often without a file name), as safetensors'
``SafetensorError`` ("No space left on device"), or as PyTorch's ``RuntimeError`` from its zip writer.
:func:`is_out_of_space` recognises all three; :class:`DiskFull` is the one-line error (exit 2) naming the
path being written, the space it needed when known and the space left.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from circuitft.errors import CircuitftError

_MARKERS = ("no space left on device", "os error 28", "code: 28", "storagefull", "errno 28")


class DiskFull(CircuitftError):
    """Writing a file failed because its file system is full (or over quota)."""


def is_out_of_space(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) is an out-of-space failure."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(m in str(e).lower() for m in _MARKERS):
            return True
        e = e.__cause__ or e.__context__
    return False


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def disk_full(path: str | os.PathLike[str] | None, needed: int | None = None) -> DiskFull:
    """The :class:`DiskFull` error for writing ``path`` (``needed`` bytes, when known)."""
    where = f"writing {path}" if path is not None else "writing a file"
    parts = []
    if needed is not None:
        parts.append(f"needs {_size(needed)}")
    free = _free_bytes(Path(path)) if path is not None else None
    if free is not None:
        parts.append(f"{_size(free)} free")
    detail = f" ({', '.join(parts)})" if parts else ""
    return DiskFull(f"out of disk space {where}{detail}; free some space and run the command again")
