"""The exact rows a run used, kept in its folder: ``<run>/data/<task>/<split>.csv``.

Written once when a run starts (atomically, all files checked before any is written). A resumed run
compares the rows it rebuilt with the kept files and refuses, naming the file, when they differ (the
generator, its parameters, the sizes or a user file changed): the resumed run would otherwise train and
evaluate on other rows than the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from circuitft.data.rows import PromptRow, rows_to_csv
from circuitft.errors import DataError
from circuitft.files import atomic_write_text
from circuitft.runfolder import RunFolder


def data_file(root: str | Path, task: str, split: str) -> Path:
    """Where a run keeps the rows of ``task``'s ``split``."""
    return RunFolder(Path(root)).data_file(task, split)


def keep_rows(
    root: str | Path,
    rows: Mapping[tuple[str, str], Sequence[PromptRow]],
    resuming: bool,
    write: bool = True,
) -> list[Path]:
    """Write ``rows[(task, split)]`` under ``root`` (see module docstring); returns the files (to be) written.

    With ``resuming``, an existing file whose rows differ raises a :class:`DataError` before anything is
    written; otherwise (a fresh run over the leftovers of one that never saved a checkpoint) it is replaced.
    ``write=False`` only checks.
    """
    todo: list[tuple[Path, str]] = []
    for (task, split), part in rows.items():
        path, text = data_file(root, task, split), rows_to_csv(part)
        if path.is_file():
            if path.read_text(encoding="utf-8") == text:
                continue
            if resuming:
                raise DataError(
                    f"{path}: the {split} rows of task {task} differ from those this run started with "
                    "(generator, parameters, sizes or source file changed); resume with the original "
                    "config, or start a new run in another folder"
                )
        todo.append((path, text))
    for path, text in todo if write else []:
        atomic_write_text(path, text)
    return [p for p, _ in todo]
