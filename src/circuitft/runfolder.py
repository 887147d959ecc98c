"""The run folder: where each file of a run lives, its state, and its record logs, in one place.

A run folder (``circuitft fit``'s ``trainer.default_root_dir``, one per run of a sweep) holds::

    <run>/
      .circuitft                 ownership marker (circuitft.owned)
      config.yaml                the resolved fit config, with its seed
      checkpoints/               step<N>.ckpt, task<j>_<name>.ckpt, last.ckpt (--ckpt_path last)
      circuits/                  the CircuitCallback's folder (its ``dirname``)
        metrics.jsonl            one record per (step, task) circuit analysis
        accuracy.jsonl           the forgetting curve: model accuracy per (step, task), no circuits
        step<NNNNNN>/<task>.safetensors   the circuit graphs
      data/<task>/<split>.csv    the exact rows the run used
      events.out.tfevents.*      TensorBoard
      DONE                       a sweep's marker of a finished run (with its wall seconds)
      .lock                      the run lock (circuitft.runlock)

Every other module asks this one for those paths and reads the record logs through :class:`RecordLog`; no
other module builds them. Layer 0: no circuitft imports beyond the foundations.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitft.errors import DataError
from circuitft.files import atomic_write_text

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
CIRCUITS = "circuits"  # the CircuitCallback's default ``dirname``
RECORDS = "metrics.jsonl"
ACCURACY = "accuracy.jsonl"
DATA = "data"
DONE = "DONE"
LAST = "last.ckpt"
STEP_CKPT = re.compile(r"step(\d+)(?:-v\d+)?\.ckpt")


def step_dirname(step: int) -> str:
    """The folder of one analysis step inside the circuits folder: ``step000040`` (as the checkpoints)."""
    return f"step{step:06d}"


def graph_relpath(step: int, task: str) -> str:
    """Where a circuit graph lives inside the circuits folder: ``step000040/Add.safetensors``."""
    return f"{step_dirname(step)}/{task}.safetensors"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (see the module docstring); ``circuits_dirname``: the callback's dirname."""

    root: Path
    circuits_dirname: str = CIRCUITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- paths ------------------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def circuits(self) -> Path:
        return self.root / self.circuits_dirname

    @property
    def records(self) -> Path:
        """The circuit records (``metrics.jsonl``)."""
        return self.circuits / RECORDS

    @property
    def accuracy(self) -> Path:
        """The forgetting-curve records (``accuracy.jsonl``)."""
        return self.circuits / ACCURACY

    @property
    def done_marker(self) -> Path:
        return self.root / DONE

    def data_file(self, task: str, split: str) -> Path:
        """Where the run keeps the rows of ``task``'s ``split``."""
        return self.root / DATA / task / f"{split}.csv"

    def graph(self, step: int, task: str) -> Path:
        """The circuit graph file of ``task`` at ``step``."""
        return self.circuits / graph_relpath(step, task)

    # ---- state ------------------------------------------------------------------------------------------
    def is_done(self) -> bool:
        return self.done_marker.exists()

    def mark_done(self, seconds: float) -> None:
        """Write ``DONE`` with the run's wall seconds (read by the sweep's time estimate), atomically."""
        atomic_write_text(self.done_marker, f"finished\nseconds: {seconds:.1f}\n")

    def done_seconds(self) -> float | None:
        """The wall seconds recorded in ``DONE`` (``seconds: S``), or None."""
        if not self.done_marker.is_file():
            return None
        found = re.search(r"^seconds: ([\d.]+)$", self.done_marker.read_text(errors="replace"), re.MULTILINE)
        return float(found.group(1)) if found else None

    def has_last_checkpoint(self) -> bool:
        return any(self.checkpoints.glob("last*.ckpt"))

    def state(self) -> str:
        """``done`` (``DONE``), ``resume`` (a ``last*.ckpt`` but no ``DONE``) or ``new``."""
        if self.is_done():
            return "done"
        return "resume" if self.has_last_checkpoint() else "new"

    def checkpoint_steps(self) -> list[int]:
        """The steps of the ``step<N>.ckpt`` files, ascending."""
        return sorted(
            int(m.group(1)) for p in self.checkpoints.glob("step*.ckpt") if (m := STEP_CKPT.fullmatch(p.name))
        )

    def last_checkpoint_step(self) -> int | None:
        """The step of the latest ``step<N>.ckpt`` (None when there is none)."""
        steps = self.checkpoint_steps()
        return steps[-1] if steps else None

    def step_checkpoint(self, step: int) -> Path | None:
        """The checkpoint file saved at ``step`` (the newest version), or None."""
        found = [
            p
            for p in self.checkpoints.glob("step*.ckpt")
            if (m := STEP_CKPT.fullmatch(p.name)) and int(m.group(1)) == step
        ]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def newest_last_checkpoint(self) -> Path | None:
        """The newest ``last*.ckpt`` (what ``--ckpt_path last`` resumes from), or None."""
        found = sorted(self.checkpoints.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

    def record_log(self) -> RecordLog:
        return RecordLog(self.records)

    def accuracy_log(self) -> RecordLog:
        return RecordLog(self.accuracy)


class RecordLog:
    """A JSON-lines log of records keyed by (step, task): ``metrics.jsonl`` or ``accuracy.jsonl``.

    Writing a record that already exists replaces it, so a resumed run that redoes a step leaves each record
    once; a successful record of a step clears the errors recorded at that step. Every write rewrites the
    file atomically (temp file + rename). Readers of a file that may be damaged use :meth:`objects` (line
    numbers, one-line errors).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def lines(self) -> list[tuple[int, str]]:
        """(line number, text) of every non-empty line (none when the file does not exist)."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]

    def objects(self) -> list[tuple[int, dict[str, Any]]]:
        """(line number, record) of every line, for readers of a file a user may hand them: one
        :class:`~circuitft.errors.DataError` naming the file and line for text that is not UTF-8, a line that
        is not JSON, nested too deeply, or not an object."""
        try:
            lines = self.lines()
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.path}: not a UTF-8 text file ({err.reason} at byte {err.start})"
            ) from None
        out = []
        for n, line in lines:
            where = f"{self.path}: line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply to be a record") from None
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            out.append((n, rec))
        return out

    def read(self) -> list[dict[str, Any]]:
        """All records, sorted by (step, task) (errors included; see :meth:`results`)."""
        rows = [json.loads(line) for _, line in self.lines()]
        return sorted(rows, key=lambda r: (r["step"], r["task"]))

    def results(self) -> list[dict[str, Any]]:
        """The records of successful analyses, sorted by (step, task)."""
        return [r for r in self.read() if not r.get("error")]

    def put(self, records: Iterable[Any]) -> None:
        """Add or replace records (dicts, or objects with ``to_dict()``), atomically."""
        new = [r if isinstance(r, dict) else r.to_dict() for r in records]
        done = {r["step"] for r in new if not r.get("error")}
        by_key = {
            (r["step"], r["task"]): r for r in self.read() if not (r.get("error") and r["step"] in done)
        }
        for rec in new:
            by_key[(rec["step"], rec["task"])] = rec
        self.write([by_key[k] for k in sorted(by_key)])

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the whole log with ``rows`` (atomically)."""
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
