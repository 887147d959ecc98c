"""One process per run folder: a lock file created atomically, holding the owner's pid and host.

``RunLock(folder).acquire()`` creates ``folder/.circuitft.lock`` with ``O_CREAT | O_EXCL`` (so exactly one
of two racing processes gets it) and writes ``{"pid", "host", "start", "command", "since"}`` into it.
A second process gets :class:`RunLocked` (one line naming the holder; the CLI exits 2). A lock left by a
process that no longer runs on this host (killed, crashed) is stale: it is taken over with a message on
stderr. The lock is released on :meth:`release`, at interpreter exit, and on SIGTERM (turned into a normal
exit when nothing else handles it); after SIGKILL the next run takes the stale lock over.

A ``circuitft sweep`` worker holds the lock of each run while its ``fit`` subprocess runs; it passes its
pid in ``CIRCUITFT_LOCK_OWNER`` so that the child fit uses the parent's lock instead of refusing.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from circuitft.errors import CircuitftError

LOCK_NAME = ".circuitft.lock"
OWNER_ENV = "CIRCUITFT_LOCK_OWNER"
_CREATING_GRACE_S = 10.0  # an unreadable lock younger than this is being written by its owner


class RunLocked(CircuitftError):
    """The run folder is in use by another live process."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return start is None or now is None or now == start


def holder(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The lock's content (``pid``, ``host``, ...) or None when the folder is not locked."""
    path = Path(folder) / LOCK_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            raise ValueError
    except ValueError:
        info = {"pid": None, "host": None, "unreadable": True}
    try:
        info["age_s"] = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    return info


def describe(info: dict[str, Any]) -> str:
    """``pid 123 on host h (fit since ...)`` for messages."""
    if info.get("unreadable"):
        return "a process that is still writing the lock file"
    what = f" ({info['command']} since {info['since']})" if info.get("command") and info.get("since") else ""
    return f"pid {info['pid']} on host {info['host']}{what}"


def is_stale(info: dict[str, Any]) -> bool:
    """Whether the lock's owner is gone (only decidable for a lock made on this host)."""
    if info.get("unreadable"):
        return info.get("age_s", 0.0) > _CREATING_GRACE_S
    if info.get("host") != socket.gethostname():
        return False
    return not _alive(int(info["pid"]), info.get("start"))


class RunLock:
    """The lock of one run folder (see module docstring). Use as a context manager or acquire/release."""

    def __init__(self, folder: str | os.PathLike[str], command: str = "fit", key: str = "run folder") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command, self.key = command, key
        self.held = False
        self._created_folder = False
        self._old_sigterm: Any = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLocked`; a stale lock is taken over with a message."""
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created_folder = True
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = holder(self.folder)
                if info is None:
                    continue  # released meanwhile: try again
                if self._inherited(info):
                    return self  # our sweep parent holds it for us; it releases it
                if not is_stale(info):
                    self._drop_created_folder()
                    raise RunLocked(
                        f"{self.folder} is in use by another circuitft run: {describe(info)}; wait for it "
                        f"to finish or use another {self.key}"
                    ) from None
                self._take_over(info)
                continue
            self._write(fd)
            self.held = True
            atexit.register(self.release)
            self._catch_sigterm()
            return self
        raise RunLocked(f"{self.folder}: could not take the lock {self.path} (it keeps changing)")

    def _inherited(self, info: dict[str, Any]) -> bool:
        owner = os.environ.get(OWNER_ENV, "")
        return (
            owner.isdigit()
            and int(owner) == info.get("pid") == os.getppid()
            and info.get("host") == socket.gethostname()
        )

    def _write(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": _start_time(os.getpid()),
            "command": self.command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info) + "\n")

    def _take_over(self, info: dict[str, Any]) -> None:
        """Move the stale lock aside (one taker wins the rename) and delete it."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process took it over first
        moved = holder_file(aside)
        if moved is not None and moved.get("pid") != info.get("pid"):
            # a fresh lock was created between our read and the rename: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        print(
            f"warning: {self.folder}: taking over the lock of {describe(info)}, which no longer runs",
            file=sys.stderr,
        )

    def _catch_sigterm(self) -> None:
        """SIGTERM -> SystemExit, so ``finally`` and atexit release the lock (only if nobody handles it)."""
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        except ValueError:  # not the main thread
            self._old_sigterm = None

    def release(self) -> None:
        """Delete the lock if this process holds it (idempotent)."""
        if not self.held:
            self._drop_created_folder()
            return
        self.held = False
        info = holder(self.folder)
        if info is not None and info.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        if self._old_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._old_sigterm)
            except ValueError:
                pass
            self._old_sigterm = None
        self._drop_created_folder()

    def _drop_created_folder(self) -> None:
        """Remove the run folder again if the lock created it and nothing else was written."""
        if self._created_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass
            self._created_folder = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_file(path: Path) -> dict[str, Any] | None:
    """The JSON content of a lock file at ``path`` (None if missing or unreadable)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
