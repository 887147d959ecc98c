"""Built-in task registry: names, descriptions, seeded rows, and rows tokenized into PromptPairs.

Rows come from ``random.Random(seed)`` only, so the same ``(name, n, seed, params)`` always gives the same
rows. :func:`make_pairs` draws from the same stream and replaces every row whose clean and corrupted
prompts tokenize to different lengths by the next draw, so it returns exactly ``n`` usable rows.
"""

from __future__ import annotations

import difflib
import random
from typing import Any

from transformers import PreTrainedTokenizerBase

from circuitft.data.generators import arithmetic, finetune_circuits, language
from circuitft.data.generators.spec import TaskSpec
from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.errors import DataError

_REGISTRY: dict[str, TaskSpec] = {
    t.name: t for t in arithmetic.TASKS + language.TASKS + finetune_circuits.TASKS
}
# A slot is given up (DataError) after this many rows in a row with mismatched token lengths.
MAX_RESAMPLES_PER_ROW = 200


def task_names() -> list[str]:
    """Names of the built-in tasks, in registry order."""
    return list(_REGISTRY)


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; a :class:`DataError` lists the valid names and suggests the closest."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    lower = {k.lower(): k for k in _REGISTRY}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.5)
    hint = f" (did you mean {lower[close[0]]}?)" if close else ""
    raise DataError(f"unknown task {name!r}{hint}; valid tasks: {', '.join(_REGISTRY)}")


def task_params(name: str) -> dict[str, str]:
    """Parameter name -> one-line help (with the default) for task ``name``."""
    spec = get_task(name)
    resolved = spec.resolve({})
    return {k: f"{p.help} (default {resolved[k]!r})" for k, p in spec.params.items()}


def describe(name: str) -> str:
    """One line: the rule and an example row (prompt without its default prefix)."""
    spec = get_task(name)
    params = spec.resolve({})
    row = spec.draw(random.Random(0), 0, params)
    prefix = params.get("prefix") or ""
    cut = lambda s: s[len(prefix) :] if prefix and s.startswith(prefix) else s  # noqa: E731
    return f"{spec.rule}. e.g. {cut(row.clean)!r} -> {row.answer!r} (corrupted {cut(row.corrupted)!r})"


def _check_n(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise DataError(f"the number of rows must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"the seed must be an integer, got {seed!r}")


def make_rows(name: str, n: int, seed: int, **params: Any) -> list[PromptRow]:
    """``n`` rows of task ``name`` drawn from ``random.Random(seed)``; deterministic.

    ``params`` override the task's parameters (e.g. ``lo``, ``hi``, ``prefix``; strings are converted);
    unknown tasks or parameters raise :class:`DataError`.
    """
    spec = get_task(name)
    _check_n(n, seed)
    resolved = spec.resolve(params)
    rng = random.Random(seed)
    return [spec.draw(rng, slot, resolved) for slot in range(n)]


def make_pairs(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    seed: int,
    prepend_bos: bool | None = None,
    **params: Any,
) -> PromptPairs:
    """``n`` rows of task ``name`` tokenized with ``tokenizer`` into :class:`PromptPairs`.

    Rows whose clean and corrupted prompts tokenize to different lengths are replaced by the next draw of
    the same seeded stream (``n_dropped`` counts them); with no mismatches the rows equal
    :func:`make_rows`. Raises :class:`DataError` after :data:`MAX_RESAMPLES_PER_ROW` mismatches in a row.
    """
    spec = get_task(name)
    _check_n(n, seed)
    resolved = spec.resolve(params)
    rng = random.Random(seed)

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows: list[PromptRow] = []
    dropped = 0
    for slot in range(n):
        for _ in range(MAX_RESAMPLES_PER_ROW):
            row = spec.draw(rng, slot, resolved)
            if length(row.clean) == length(row.corrupted):
                rows.append(row)
                break
            dropped += 1
        else:
            raise DataError(
                f"task {name}: {MAX_RESAMPLES_PER_ROW} draws in a row for row {slot + 1} had clean and "
                "corrupted prompts of different token lengths with this tokenizer"
            )
    pairs = tokenize_pairs(rows, tokenizer, task=name, prepend_bos=prepend_bos, on_mismatch="error")
    pairs.n_dropped = dropped
    return pairs
