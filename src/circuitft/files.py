"""Atomic writes: a crash or a concurrent reader never sees half a file or half a folder.

Every file circuitft writes goes through :func:`atomic_write` (a temporary file in the same folder, then
``os.replace``) and gets the ordinary permissions of the user's umask; whole folders (output folders,
caches) go through :func:`atomic_folder`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from circuitft.diskfull import disk_full, is_out_of_space
from circuitft.errors import CircuitftError
from circuitft.outputs import output_error


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


def atomic_folder(
    write: Callable[[Path], None],
    folder: str | os.PathLike[str],
    *,
    option: str | None = None,
    overwrite: bool = True,
    replace: bool = False,
) -> None:
    """Fill ``folder`` by ``write(tmp)`` into a fresh temporary sibling folder, then move it into place.

    - ``folder`` absent: the temporary folder is renamed onto it, so readers never see a partial folder.
    - ``folder`` present (an earlier run's output, or another process that filled a cache first): each file
      written replaces its namesake (with ``overwrite=False`` the file already there wins: caches whose
      content does not depend on the writer); the folder's other files are kept.
      With ``replace=True`` the whole folder is swapped for the new one instead (a report: no stale file
      of an earlier version survives); the old folder is moved aside first and deleted after the swap.
    - On failure or interrupt the temporary folder is removed and ``folder`` is left as it was. Errors name
      ``folder``, never the temporary one: out of space is :class:`~circuitft.diskfull.DiskFull`, a circuitft
      error keeps its type, and with ``option`` (the command-line option that gave ``folder``, e.g.
      ``--out``) an ``OSError`` becomes one ConfigError naming both.
    """
    folder = Path(folder)
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        write(tmp)
        if replace and folder.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
            try:
                os.replace(tmp, folder)
            except OSError:
                os.replace(old / folder.name, folder)  # put the earlier folder back
                old.rmdir()
                raise
            tmp = old  # the earlier folder, removed below
            return
        try:
            os.replace(tmp, folder)  # fails when folder exists and is not empty
            tmp = None
        except OSError:
            if not folder.is_dir():
                raise
            for item in tmp.iterdir():  # existing folder: move our files in one by one, keep the others
                if overwrite or not (folder / item.name).exists():
                    os.replace(item, folder / item.name)
    except Exception as err:
        if isinstance(err, CircuitftError) or is_out_of_space(err) or (option and isinstance(err, OSError)):
            raise output_error(folder, err, option or "", tmp) from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
