"""Running a sweep (or one shard of it): each run's ``circuitft fit`` in its own subprocess and run folder.

A run whose folder holds ``DONE`` is skipped; one with a ``last*.ckpt`` but no ``DONE`` resumes with
``--ckpt_path last``. A run that continues a shared prefix (:mod:`circuitft.sweeps.prefix`) first makes sure
the prefix is trained: under the prefix folder's run lock it trains (or resumes) it, or, while another worker
holds that lock, runs its other runs first and then waits; then it starts from the prefix's end (:func:`~circuitft.sweeps.prefix.fork`). Two
workers never train the same run or prefix: each holds the folder's :class:`~circuitft.runlock.RunLock`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from circuitft.names import inside
from circuitft.runfolder import RunFolder
from circuitft.runlock import OWNER_ENV, RunLock, RunLocked, holder, is_stale
from circuitft.sweeps.prefix import Prefix, PrefixIncomplete, Sharing, fork, run_stream
from circuitft.sweeps.spec import Run

WAIT_S = 5.0  # how often a worker looks again at a prefix another worker trains


def fit_command(fit_config: Path, folder: Path, args: Sequence[str], resume: bool) -> list[str]:
    """The ``python -m circuitft fit`` command line of one run (or prefix) in ``folder``."""
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(fit_config), *args]
    cmd += ["--trainer.default_root_dir", str(folder)]
    if resume:
        cmd += ["--ckpt_path", "last"]
    return cmd


def train(fit_config: Path, folder: Path, args: Sequence[str]) -> int:
    """Train (or resume) the fit in ``folder`` and mark it ``DONE``; the fit's exit status."""
    run = RunFolder(folder)
    cmd = fit_command(fit_config, folder, args, resume=run.state() == "resume")
    started = time.monotonic()
    rc = subprocess.call(cmd, env={**os.environ, OWNER_ENV: str(os.getpid())})
    if rc == 0:
        run.mark_done(time.monotonic() - started)  # the wall seconds feed the dry run's estimate
    return rc


class SweepRunner:
    """Runs the runs of one worker, training the prefixes they continue from first."""

    def __init__(self, fit_config: Path, root: Path, extra: Sequence[str], sharing: Sharing) -> None:
        self.fit_config, self.root, self.extra, self.sharing = fit_config, Path(root), list(extra), sharing
        self.failed: list[str] = []
        self.busy: list[str] = []

    def run_all(self, runs: Sequence[Run]) -> int:
        """Run ``runs`` in order; 0, 1 (some failed) or 2 (some held by another worker). A run whose shared
        prefix another worker is training goes to the back of the queue while other runs can go first."""
        queue, k = deque(runs), 0
        deferred: set[str] = set()
        while queue:
            run = queue.popleft()
            folder = inside(self.root, run.name, key=f"run {run.name}")
            state = RunFolder(folder).state()
            start = self.sharing.start.get(run.name)
            if (
                state == "new"
                and start is not None
                and run.name not in deferred
                and queue
                and self.busy_prefix(start)
            ):
                deferred.add(run.name)  # once: when its turn comes again, it waits for the prefix
                queue.append(run)
                continue
            k += 1
            via = f" (from prefix {start.name})" if start is not None and state == "new" else ""
            print(f"[{k}/{len(runs)}] {run.name}: {state}{via}", flush=True)
            if state != "done":
                self.run_one(run, folder, start)
        if self.failed:
            print(
                f"error: {len(self.failed)} of {len(runs)} runs failed: {', '.join(self.failed)}",
                file=sys.stderr,
            )
            return 1
        if self.busy:
            print(
                f"error: {len(self.busy)} runs skipped, held by another worker: {', '.join(self.busy)}",
                file=sys.stderr,
            )
            return 2
        return 0

    def run_one(self, run: Run, folder: Path, start: Prefix | None) -> None:
        try:
            lock = RunLock(folder, "sweep", key="shard (another worker runs it)").acquire()
        except RunLocked as err:  # another worker (an overlapping --shard) trains it: skip it
            print(f"error: run {run.name}: {err}", file=sys.stderr)
            self.busy.append(run.name)
            return
        try:
            rf = RunFolder(folder)
            if rf.is_done():  # again, under the lock: another worker may have finished it
                return
            if start is not None and rf.state() == "new":
                if not self.ensure_prefix(start):
                    self.failed.append(run.name)
                    return
                stream = run_stream(self.fit_config, run, self.extra)
                try:
                    fork(start, start.folder(self.root), stream, folder)
                except PrefixIncomplete as err:
                    print(f"note: run {run.name}: {err} (stopped early?): it trains from scratch", flush=True)
            rc = train(self.fit_config, folder, [*run.args, *self.extra])
            if rc != 0:
                print(f"error: run {run.name} failed with exit status {rc}", file=sys.stderr)
                self.failed.append(run.name)
        finally:
            lock.release()

    def busy_prefix(self, prefix: Prefix) -> bool:
        """Whether another live worker holds ``prefix`` (or a prefix it continues) while it is not done."""
        while prefix is not None:
            folder = prefix.folder(self.root)
            if not RunFolder(folder).is_done():
                info = holder(folder) if folder.is_dir() else None
                if info is not None and not is_stale(info):
                    return True
            prefix = prefix.parent
        return False

    def ensure_prefix(self, prefix: Prefix) -> bool:
        """Train ``prefix`` (and its parents) unless done; wait while another worker trains it."""
        folder = prefix.folder(self.root)
        rf = RunFolder(folder)
        if rf.is_done():
            return True
        if prefix.parent is not None and not self.ensure_prefix(prefix.parent):
            return False
        waited = False
        while True:
            try:
                lock = RunLock(folder, "sweep", key="shared prefix").acquire()
                break
            except RunLocked:
                if not waited:
                    print(f"prefix {prefix.name}: another worker trains it; waiting", flush=True)
                    waited = True
                time.sleep(WAIT_S)
        try:
            if rf.is_done():
                return True
            print(
                f"prefix {prefix.name}: training {' -> '.join(prefix.stage_names())} for {len(prefix.runs)} runs"
            )
            if prefix.parent is not None and rf.state() == "new":
                try:
                    fork(prefix.parent, prefix.parent.folder(self.root), prefix.as_stream(), folder)
                except PrefixIncomplete as err:
                    print(
                        f"note: prefix {prefix.name}: {err} (stopped early?): it trains from scratch",
                        flush=True,
                    )
            config = prefix.write_config(self.root)
            rc = train(self.fit_config, folder, [*prefix.args, "--config", str(config)])
            if rc != 0:
                print(f"error: prefix {prefix.name} failed with exit status {rc}", file=sys.stderr)
            return rc == 0
        finally:
            lock.release()
