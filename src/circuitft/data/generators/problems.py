"""Tasks as problem spaces: draw a problem uniformly, list every problem, pick a usable corruption.

A :class:`Rule` says how a task's problems (tuples) are drawn, listed, rendered as prompts, answered and
corrupted. A corruption candidate is usable when it changes the prompt, keeps every number's digit count
(so clean and corrupted prompts tokenize to the same length with digit-splitting tokenizers) and, when the
task has a ``wrong`` answer, changes the answer and keeps it at most ``max_value``. A problem is usable when
it is valid and has a usable corruption. :func:`drawer` and :func:`problem_space` make a
:class:`~circuitft.data.generators.spec.TaskSpec`'s ``draw`` and ``problem_space`` from a rule.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from circuitft.data.generators.spec import KEEP_CLEAN, MAX_DRAWS
from circuitft.data.rows import PromptRow
from circuitft.errors import DataError

# A problem space is listed (exact split sizes) only when its scan rejects at most this many candidates.
SPACE_MAX = 250_000
# Rejection draws of a problem before a listable task draws from its (cached) list instead.
REJECTION_TRIES = 64

Problem = tuple[Any, ...]
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Rule:
    """One task: how to draw, list, render and corrupt its problems (``p``: the resolved parameters)."""

    classes: int  # row ``slot`` draws from class ``slot % classes``
    sample: Callable[[random.Random, int, Mapping[str, Any]], Problem | None]  # one rejection-draw try
    scan: Callable[[int, Mapping[str, Any]], Iterable[Problem]]  # candidates of a class (a superset)
    scan_size: Callable[[int, Mapping[str, Any]], int]
    prompt: Callable[[Problem, Mapping[str, Any]], str]
    answer: Callable[[Problem], int]
    corruptions: Callable[[Problem, Mapping[str, Any]], Iterable[Problem]]  # candidates (filtered here)
    valid: Callable[[Problem, Mapping[str, Any]], bool]  # in range (before the corruption check)
    has_wrong: bool = True
    scan_exact: bool = False  # ``scan`` yields exactly the usable problems (large spaces; tested equal)


def shape(text: str) -> list[int]:
    """Digit counts of the numbers in ``text``, in order."""
    return [len(m) for m in _NUMBER.findall(text)]


def corruption_check(rule: Rule, prob: Problem, p: Mapping[str, Any]) -> Callable[[Problem], bool]:
    """Whether a corruption candidate of ``prob`` is usable: it changes the prompt, keeps every number's
    digit count, and (when the task has a ``wrong`` answer) changes the answer and keeps it in range."""
    clean = rule.prompt(prob, p)
    digits, answer, limit = shape(clean), rule.answer(prob), p.get("max_value", math.inf)

    def ok(c: Problem) -> bool:
        text = rule.prompt(c, p)
        if text == clean or shape(text) != digits:
            return False
        return not rule.has_wrong or answer != rule.answer(c) <= limit

    return ok


def pick_corruption(
    rule: Rule, prob: Problem, p: Mapping[str, Any], rng: random.Random | None
) -> Problem | None:
    """A uniformly drawn usable corruption of ``prob`` (the first one without ``rng``); None if there is none.

    A few rejection draws first (uniform over the usable ones), then the full list (uniform again).
    """
    ok = corruption_check(rule, prob, p)
    if rng is None:
        return next(filter(ok, rule.corruptions(prob, p)), None)
    candidates = list(rule.corruptions(prob, p))
    for _ in range(min(16, len(candidates))):
        c = rng.choice(candidates)
        if ok(c):
            return c
    good = [c for c in candidates if ok(c)]
    return rng.choice(good) if good else None


def usable(rule: Rule, prob: Problem, p: Mapping[str, Any]) -> bool:
    """Whether ``prob`` is valid and has a usable corruption."""
    return rule.valid(prob, p) and pick_corruption(rule, prob, p, None) is not None


def problem_key(p: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The parameters that decide the problems (not the prefix, not the task layer's split predicate)."""
    return tuple(sorted((k, v) for k, v in p.items() if k != "prefix" and not k.startswith("_")))


def drawer(name: str, rule: Rule) -> Callable[[random.Random, int, Mapping[str, Any]], PromptRow]:
    """The ``draw`` of a :class:`TaskSpec`: a uniform problem of class ``slot % rule.classes`` (rejection
    draws first, then the listed problems) and a uniform usable corruption."""

    def draw(rng: random.Random, slot: int, p: Mapping[str, Any]) -> PromptRow:
        cls = slot % rule.classes
        keep = p.get(KEEP_CLEAN)
        shown = ", ".join(f"{k}={v!r}" for k, v in problem_key(p)) or "the defaults"

        def finish(prob: Problem | None) -> PromptRow | None:
            if prob is None or not rule.valid(prob, p):
                return None
            if keep is not None and not keep(rule.prompt(prob, p)):
                return None
            corrupted = pick_corruption(rule, prob, p, rng)
            if corrupted is None:
                return None
            return PromptRow(
                clean=rule.prompt(prob, p),
                corrupted=rule.prompt(corrupted, p),
                answer=str(rule.answer(prob)),
                wrong=str(rule.answer(corrupted)) if rule.has_wrong else None,
            )

        listable = sum(rule.scan_size(c, p) for c in range(rule.classes)) <= SPACE_MAX
        for _ in range(REJECTION_TRIES if listable else MAX_DRAWS):  # cheap: no listing
            row = finish(rule.sample(rng, cls, p))
            if row is not None:
                return row
        problems = listed(rule, problem_key(p)) if listable else None
        if problems is not None and not problems[cls]:
            raise DataError(f"task {name}: no usable problem with {shown} (widen the ranges)")
        for _ in range(MAX_DRAWS if problems is not None else 0):  # rare: the listed problems
            row = finish(rng.choice(problems[cls]))
            if row is not None:
                return row
        kept = " of this split" if keep is not None else ""
        raise DataError(f"task {name}: no usable problem{kept} with {shown} after {MAX_DRAWS} draws")

    return draw


@functools.lru_cache(maxsize=32)
def listed(rule: Rule, key: tuple[tuple[str, Any], ...]) -> tuple[tuple[Problem, ...], ...] | None:
    """Every usable problem of ``rule`` per class for parameters ``key`` (:func:`problem_key`), or None
    when there are more than :data:`SPACE_MAX` candidates to scan. Built once per rule and parameters."""
    p = {**dict(key), "prefix": ""}
    if sum(rule.scan_size(c, p) for c in range(rule.classes)) > SPACE_MAX:
        return None
    if rule.scan_exact:
        return tuple(tuple(rule.scan(c, p)) for c in range(rule.classes))
    return tuple(
        tuple(dict.fromkeys(t for t in rule.scan(c, p) if usable(rule, t, p))) for c in range(rule.classes)
    )


def problem_space(rule: Rule) -> Callable[[Mapping[str, Any]], list[list[str]] | None]:
    """The ``problem_space`` hook of a :class:`TaskSpec`: the clean prompts of :func:`listed`."""

    def space(p: Mapping[str, Any]) -> list[list[str]] | None:
        problems = listed(rule, problem_key(p))
        return None if problems is None else [[rule.prompt(t, p) for t in c] for c in problems]

    return space
