"""The task row: one clean/corrupted prompt pair and its answer, as plain strings."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromptRow:
    """One example of a task.

    ``clean`` and ``corrupted`` are full prompts (the same text format is used for training and for
    attribution); ``answer`` is the text the model should produce after the clean prompt; ``wrong`` is an
    optional contrasting answer (used by the ``logit_diff`` / ``prob_diff`` metrics), usually the answer to
    the corrupted prompt.
    """

    clean: str
    corrupted: str
    answer: str
    wrong: str | None = None

    def to_dict(self) -> dict[str, str]:
        """Row as a plain dict (``wrong`` omitted when absent)."""
        d = asdict(self)
        if d["wrong"] is None:
            del d["wrong"]
        return d


COLUMNS = ("clean", "corrupted", "answer", "wrong")


def rows_to_csv(rows: Sequence[PromptRow]) -> str:
    """Rows as CSV text with header ``clean,corrupted,answer,wrong`` and ``\\n`` line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.clean, row.corrupted, row.answer, row.wrong or ""])
    return buf.getvalue()
