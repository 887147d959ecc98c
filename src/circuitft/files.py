"""Atomic writes: a crash or a concurrent reader never sees half a file or half a folder.

Every file circuitft writes goes through :func:`atomic_write` (a temporary file in the same folder, then
``os.replace``) and gets the ordinary permissions of the user's umask; whole folders (output folders,
caches) go through :func:`atomic_folder`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Inside: SIGTERM raises SystemExit (so temporary files are removed on the way out), unless the
    program already handles SIGTERM itself (which then decides) or this is not the main thread."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block is done (then they act as usual)."""
    held = {signal.SIGTERM, signal.SIGINT}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _ordinary_modes(folder: Path) -> None:
    """Give every file and folder under ``folder`` the umask's ordinary permissions (some writers, e.g.
    safetensors, make private 0600 files)."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name, mode in [*((d, 0o777) for d in dirs), *((f, 0o666) for f in files)]:
            path = os.path.join(root, name)
            if not os.path.islink(path):  # a link's target is not ours to change
                os.chmod(path, mode & ~mask)


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
    with _sigterm_as_exit():
        _fill_folder(write, Path(folder), option, overwrite, replace)


def _fill_folder(
    write: Callable[[Path], None], folder: Path, option: str | None, overwrite: bool, replace: bool
) -> None:
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        write(tmp)
        _ordinary_modes(tmp)
        if replace and folder.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            with _signals_held():  # a SIGTERM between the two renames would leave no folder at all
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
