"""Folders circuitft owns: it never deletes or overwrites a folder it did not write.

Every folder a command fills as a whole (a run folder of ``fit`` or ``sweep``, a ``report --out``, a
``circuit --out``, an ``export --out``) holds a marker file, ``.circuitft``, naming what it is
(``{"kind": "run"}``, ``"report"``, ...). A command writes into or replaces an existing folder only when it is
empty or holds the marker of its own kind; anything else (your own files, another command's output, a run
given to ``report``) is refused with one line before any work. Run folders written before the marker
existed are recognised by what only a run holds (checkpoints, circuit records, TensorBoard events), and
reports and ``circuit`` outputs by their exact layout (nothing but the page, its figures and tables; the
three files ``circuit`` writes); all are marked on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from circuitft import __version__
from circuitft.errors import ConfigError
from circuitft.files import atomic_write_text

MARKER = ".circuitft"
_OURS = {MARKER, ".circuitft.lock"}  # files circuitft leaves in a folder it is about to own
_CIRCUIT_FILES = {"graph.json", "graph.safetensors", "metrics.json"}  # what `circuit --out` writes


def kind_of(folder: str | os.PathLike[str]) -> str | None:
    """The kind recorded in ``folder``'s marker (``"run"``, ``"report"``, ...), or None when unmarked."""
    path = Path(folder) / MARKER
    try:
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def mark(folder: str | os.PathLike[str], kind: str) -> None:
    """Write ``folder``'s marker (atomically; the folder must exist)."""
    text = json.dumps({"kind": kind, "written_by": f"circuitft {__version__}"}) + "\n"
    atomic_write_text(Path(folder) / MARKER, text)


def _legacy_run(folder: Path) -> bool:
    """A run folder written before the marker: it holds checkpoints, circuit records, a sweep's ``DONE``,
    Lightning's ``hparams.yaml``, a CircuitLoRA plan or TensorBoard events (none of which a hand-made folder
    holds)."""
    names = ("hparams.yaml", "DONE", "circuits/metrics.jsonl", "circuit_lora.json")
    if any((folder / name).is_file() for name in names):
        return True
    return any((folder / "checkpoints").glob("*.ckpt")) or any(folder.glob("events.out.tfevents.*"))


def _legacy_report(folder: Path, entries: list[Path]) -> bool:
    """A report written before the marker: exactly its layout (``index.html`` titled "circuitft report",
    ``figures/`` of PNG and SVG, ``tables/`` of CSV, ``fit.json``, the explorer pages) and nothing else."""
    names = {e.name for e in entries if not (e.name.startswith("explorer") and e.name.endswith(".html"))}
    if not {"index.html", "figures", "tables"} <= names <= {"index.html", "figures", "tables", "fit.json"}:
        return False
    try:
        head = (folder / "index.html").read_text(encoding="utf-8", errors="replace")[:2000]
        figures = all(p.suffix in (".png", ".svg") and p.is_file() for p in (folder / "figures").iterdir())
        tables = all(p.suffix == ".csv" and p.is_file() for p in (folder / "tables").iterdir())
    except OSError:
        return False
    return "<title>circuitft report" in head and figures and tables


def _names(entries: Iterable[Path], n: int = 3) -> str:
    # names circuitft itself writes last: the files that make the folder foreign are the ones to show
    ours = _CIRCUIT_FILES | {"figures", "tables", "fit.json", "checkpoints", "circuits", "hparams.yaml"}
    named = sorted(entries, key=lambda e: (e.name in ours, e.name))
    names = [e.name + ("/" if e.is_dir() else "") for e in named]
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def check_owned(folder: str | os.PathLike[str], kind: str, option: str, *, what: str) -> None:
    """ConfigError unless ``folder`` is absent, empty, or holds circuitft's marker of ``kind``.

    ``option`` names where the folder came from (``--out``, ``--trainer.default_root_dir``) and ``what``
    says what the command would do to it ("replace", "write into"); the error lists a few foreign files.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"{option} {folder}: exists and is not a folder")
    found = kind_of(folder)
    if found == kind:
        return
    try:
        entries = [e for e in folder.iterdir() if e.name not in _OURS]
    except OSError as err:
        raise ConfigError(f"{option} {folder}: cannot list it ({err.strerror or err})") from None
    if not entries:
        return
    if found is not None:
        raise ConfigError(
            f"{option} {folder}: is a circuitft {found} folder, not a {kind} folder; circuitft will not "
            f"{what} it: choose another folder"
        )
    if (kind == "run" and _legacy_run(folder)) or (kind == "report" and _legacy_report(folder, entries)):
        return
    # circuit's output before the marker: exactly the three files it writes
    if kind == "circuit" and {e.name for e in entries} == _CIRCUIT_FILES:
        return
    raise ConfigError(
        f"{option} {folder}: folder is not empty and holds no {kind} written by circuitft (no {MARKER} "
        f"marker; found {_names(entries)}); circuitft will not {what} it: choose a new or empty folder"
    )


def check_not_around(
    out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], option: str
) -> None:
    """ConfigError when ``out`` is one of ``inputs`` or a folder holding one of them (replacing it deletes it)."""
    target = Path(out).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if src == target or target in src.parents:
            rel = "is" if src == target else "holds"
            raise ConfigError(
                f"{option} {out}: {rel} the run {item} being read; replacing it would delete it: choose "
                "another folder"
            )
