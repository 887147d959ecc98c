"""Built-in task registry: names, descriptions, seeded rows, and rows tokenized into PromptPairs.

Rows come from ``random.Random(seed)`` only, so the same ``(name, n, seed, params, split)`` always gives
the same rows. :func:`make_pairs` draws from the same stream and replaces every row whose clean and
corrupted prompts tokenize to different lengths by the next draw, so it returns exactly ``n`` usable rows.

``split`` ("train", "val" or "test") keeps only the draws whose problem belongs to that split (a hash of
the clean prompt, :mod:`circuitft.data.splits`), so the three splits never share a problem. Rows of one
split are distinct problems; ``train`` samples with replacement once more rows are asked for than its split
holds, ``val`` and ``test`` raise a :class:`DataError` naming the task, the split and its size instead.
``split=None`` ignores the partition and draws with replacement from the whole space.
"""

from __future__ import annotations

import difflib
import functools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from circuitft.data.generators import arithmetic, finetune_circuits, language
from circuitft.data.generators.spec import KEEP_CLEAN, TaskSpec
from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.data.splits import SPLITS, check_split, split_of
from circuitft.errors import DataError

if TYPE_CHECKING:  # not at run time: `circuitft fit --help` must not import transformers
    from transformers import PreTrainedTokenizerBase

_REGISTRY: dict[str, TaskSpec] = {
    t.name: t for t in arithmetic.TASKS + language.TASKS + finetune_circuits.TASKS
}
# A slot is given up (DataError) after this many rows in a row with mismatched token lengths.
MAX_RESAMPLES_PER_ROW = 200
# Drawing a split's rows gives up (train: switches to sampling with replacement) after this many draws in a
# row that gave no new usable problem of the split.
MAX_STALL = 20_000


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


def make_rows(name: str, n: int, seed: int, split: str | None = None, **params: Any) -> list[PromptRow]:
    """``n`` rows of task ``name`` (of split ``split``) drawn from ``random.Random(seed)``; deterministic.

    ``params`` override the task's parameters (e.g. ``lo``, ``hi``, ``prefix``; strings are converted);
    unknown tasks or parameters raise :class:`DataError`. See the module docstring for ``split``.
    """
    spec = get_task(name)
    _check_n(n, seed)
    resolved = spec.resolve(params)
    rows, _ = _draw_rows(spec, n, seed, resolved, split)
    return rows


def make_pairs(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    seed: int,
    prepend_bos: bool | None = None,
    split: str | None = None,
    **params: Any,
) -> PromptPairs:
    """``n`` rows of task ``name`` (of split ``split``) tokenized with ``tokenizer`` into PromptPairs.

    Rows whose clean and corrupted prompts tokenize to different lengths are replaced by the next draw of
    the same seeded stream (``n_dropped`` counts them); with no mismatches the rows equal
    :func:`make_rows`. Raises :class:`DataError` after :data:`MAX_RESAMPLES_PER_ROW` mismatches in a row.
    """
    spec = get_task(name)
    _check_n(n, seed)
    resolved = spec.resolve(params)

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows, dropped = _draw_rows(
        spec, n, seed, resolved, split, lambda r: length(r.clean) == length(r.corrupted)
    )
    pairs = tokenize_pairs(rows, tokenizer, task=name, prepend_bos=prepend_bos, on_mismatch="error")
    pairs.n_dropped = dropped
    return pairs


def split_sizes(name: str, **params: Any) -> dict[str, int] | None:
    """Distinct problems of task ``name`` in each split, or None when its space is too large to list."""
    spec = get_task(name)
    caps = _capacities(spec.name, tuple(sorted(spec.resolve(params).items())))
    return None if caps is None else {s: sum(c[s] for c in caps) for s in SPLITS}


def split_limits(name: str, **params: Any) -> dict[str, int] | None:
    """Most rows of distinct problems each split can give (less than its size when rows alternate between
    kinds, e.g. AddSub's ``+`` and ``-`` rows), or None when the space is too large to list."""
    spec = get_task(name)
    caps = _capacities(spec.name, tuple(sorted(spec.resolve(params).items())))
    return None if caps is None else {s: _most_rows([c[s] for c in caps]) for s in SPLITS}


@functools.lru_cache(maxsize=64)
def _capacities(name: str, items: tuple[tuple[str, Any], ...]) -> list[dict[str, int]] | None:
    """Per slot class: distinct problems in each split (None: the task lists no problem space)."""
    spec = get_task(name)
    if spec.problem_space is None:
        return None
    lists = spec.problem_space(dict(items))
    if lists is None:
        return None
    out = []
    for prompts in lists:
        counts = dict.fromkeys(SPLITS, 0)
        for p in set(prompts):
            counts[split_of(p)] += 1
        out.append(counts)
    return out


def _mismatch_error(name: str, slot: int) -> DataError:
    return DataError(
        f"task {name}: {MAX_RESAMPLES_PER_ROW} draws in a row for row {slot + 1} had clean and "
        "corrupted prompts of different token lengths with this tokenizer"
    )


def _draw_rows(
    spec: TaskSpec,
    n: int,
    seed: int,
    params: dict[str, Any],
    split: str | None,
    usable: Callable[[PromptRow], bool] | None = None,
) -> tuple[list[PromptRow], int]:
    """``n`` rows (and the number of unusable draws replaced) of ``split``; see the module docstring."""
    rng = random.Random(seed)
    rows: list[PromptRow] = []
    dropped = 0
    if split is None:
        for slot in range(n):
            for _ in range(MAX_RESAMPLES_PER_ROW):
                row = spec.draw(rng, slot, params)
                if usable is None or usable(row):
                    rows.append(row)
                    break
                dropped += 1
            else:
                raise _mismatch_error(spec.name, slot)
        return rows, dropped

    check_split(split)
    caps = _capacities(spec.name, tuple(sorted(params.items())))
    distinct = True
    if caps is not None:
        k = len(caps)
        need = [len(range(c, n, k)) for c in range(k)]
        have = [c[split] for c in caps]
        if any(a > b for a, b in zip(need, have, strict=True)):
            if split != "train" or 0 in [h for h, m in zip(have, need, strict=True) if m]:
                most = _most_rows(have)
                raise DataError(
                    f"task {spec.name}: asked for {n} {split} rows, but the {split} split holds "
                    f"{sum(have)} distinct problems (at most {most} rows without repeating one)"
                )
            distinct = False  # train: sampling with replacement
    seen: set[str] = set()
    bad: set[str] = set()
    early = caps is not None and distinct  # enough distinct problems: let the drawer skip repeats too

    def keep(clean: str) -> bool:
        return split_of(clean) == split and not (early and (clean in seen or clean in bad))

    params = {**params, KEEP_CLEAN: keep}
    for slot in range(n):
        stall = mismatches = 0
        while True:
            try:
                row = spec.draw(rng, slot, params)
            except DataError:
                if not early:
                    raise
                early = False  # few new problems left: the drawer gave up skipping repeats; reject them here
                continue
            new = split_of(row.clean) == split and not (distinct and (row.clean in seen or row.clean in bad))
            if new and usable is not None and not usable(row):
                dropped += 1
                mismatches += 1
                if distinct:
                    bad.add(row.clean)
                elif mismatches >= MAX_RESAMPLES_PER_ROW:
                    raise _mismatch_error(spec.name, slot)
                new = False
            if new:
                seen.add(row.clean)
                rows.append(row)
                break
            stall += 1
            if stall >= MAX_STALL:
                if split != "train" or not distinct:
                    unusable = f" ({len(bad)} more not usable with this tokenizer)" if bad else ""
                    raise DataError(
                        f"task {spec.name}: asked for {n} {split} rows, but the {split} split gave only "
                        f"{len(seen)} distinct problems{unusable} in {MAX_STALL} draws"
                    )
                distinct, stall = False, 0  # train: sampling with replacement
    return rows, dropped


def _most_rows(have: list[int]) -> int:
    """Most rows of distinct problems when row ``slot`` draws from slot class ``slot % len(have)``."""
    k, n = len(have), 0
    while have[n % k] > n // k:
        n += 1
    return n
