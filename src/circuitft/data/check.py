"""Answers that join their prompt differently than in running text (a tokenizer-only check of task rows).

Every sequence is built as ``tokens(prompt) + tokens(answer)`` (:func:`circuitft.data.pairs.tokenize_pairs`).
Two slips make those tokens differ from what the model reads in running text, so it never predicts them:

- **split boundary**: ``tokens(prompt + answer)`` differs from ``tokens(prompt) + tokens(answer)`` (e.g. a
  prompt ending in a space, ``"is "`` + ``"Paris"``: running text has one token ``" Paris"``);
- **glued words**: the prompt ends with a letter and the answer starts with one, with no space between
  (``"is"`` + ``"Paris"`` reads ``"isParis"``); reported when the tokenizer gives the answer other tokens
  as a separate word (``tokens(" Paris")`` differs from ``tokens("Paris")``), i.e. the answer most likely
  lacks its leading space. Only scripts written with spaces between words count (Latin, Greek, Cyrillic).

Row numbers are 1-based data rows, as in the other data errors.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from circuitft.data.rows import PromptRow

SPACED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


@dataclass
class GlueProblem:
    """One answer whose tokens after the prompt differ from its tokens in running text."""

    row: int  # 1-based data row
    column: str  # "answer" or "wrong"
    text: str  # the column's text
    kind: str  # "split boundary" or "glued words"
    as_built: list[str]  # tokens as the sequence is built (the prompt's merged tail, then the answer)
    in_text: list[str]  # tokens in running text
    suggestion: str | None  # e.g. "' Paris' (leading space)"

    def describe(self) -> str:
        """One line naming the row, the tokens both ways and the likely fix."""
        fix = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        if self.kind == "glued words":
            return (
                f"row {self.row}: {self.column} {self.text!r} follows the prompt without a space, so it is "
                f"built as tokens {self.as_built} while as a word in running text it is {self.in_text}{fix}"
            )
        return (
            f"row {self.row}: prompt end + {self.column} {self.text!r} tokenize as {self.in_text} in running "
            f"text but as {self.as_built} when tokenized apart (as the sequences are built){fix}"
        )


def glue_problems(rows: Sequence[PromptRow], tokenizer: Any) -> list[GlueProblem]:
    """Every answer (and ``wrong`` answer) of ``rows`` that joins the clean prompt differently than in
    running text (see the module docstring)."""

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def show(token_ids: list[int]) -> list[str]:
        return [tokenizer.decode([i]) for i in token_ids]

    out = []
    for n, row in enumerate(rows, start=1):
        prompt = ids(row.clean)
        for column, text in (("answer", row.answer), ("wrong", row.wrong)):
            if not text:
                continue
            alone = ids(text)
            joined = ids(row.clean + text)
            suggestion = _suggestion(row.clean, text)
            if joined != prompt + alone:
                k = _common_prefix(joined, prompt)
                out.append(
                    GlueProblem(n, column, text, "split boundary", show(prompt[k:] + alone), show(joined[k:]),
                                suggestion)
                )  # fmt: skip
            elif suggestion is not None and ids(" " + text) != alone:
                out.append(
                    GlueProblem(
                        n, column, text, "glued words", show(alone), show(ids(" " + text)), suggestion
                    )
                )
    return out


def _suggestion(prompt: str, text: str) -> str | None:
    """The likely intended answer when a word answer lacks its leading space, else None."""
    if not prompt or not text or text[0].isspace():
        return None
    if prompt[-1].isspace():
        return f"the prompt without its trailing space and {' ' + text!r} (leading space)"
    if _spaced_letter(prompt[-1]) and _spaced_letter(text[0]):
        return f"{' ' + text!r} (leading space)"
    return None


def _spaced_letter(ch: str) -> bool:
    return ch.isalpha() and unicodedata.name(ch, "").startswith(SPACED_SCRIPTS)


def _common_prefix(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


__all__ = ["GlueProblem", "glue_problems"]
