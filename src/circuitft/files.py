"""Atomic writes: a crash or a concurrent reader never sees half a file or half a folder.

Every file circuitft writes goes through :func:`atomic_write` (a temporary file in the same folder, then
``os.replace``) and gets the ordinary permissions of the user's umask; cache folders go through
:func:`atomic_folder`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from circuitft.diskfull import disk_full, is_out_of_space


def atomic_write(path: str | os.PathLike[str], saver: Callable[[str], None]) -> None:
    """Call ``saver(tmp)`` on a temporary path in ``path``'s folder, then ``os.replace`` it onto ``path``.

    Readers never see a half-written file; on failure the temporary file is removed.
    """
    path = Path(path)
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        saver(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are ordinary files
        os.replace(tmp, path)
    except BaseException as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, Exception) and is_out_of_space(err):
            raise disk_full(path) from None  # one line naming the user's file, not the temporary one
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""

    def save(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    atomic_write(path, save)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_folder(write: Callable[[str], None], folder: Path) -> None:
    """Create ``folder`` by ``write(tmp)`` into a sibling temp folder, then renaming it into place.

    Readers never see a partial folder; if ``write`` raises (or the process is interrupted) the temp folder
    is removed. If another process created ``folder`` meanwhile, its folder is kept and ours discarded.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(str(tmp))
        tmp.chmod(0o777 & ~_umask())
        try:
            os.replace(tmp, folder)  # fails if folder exists and is not empty: another process won
        except OSError:
            if not folder.is_dir():
                raise
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, Exception) and is_out_of_space(err):
            raise disk_full(folder) from None
        raise
