"""What a built-in task is: a name, a one-line rule, typed parameters and a seeded row drawer."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from circuitft.data.rows import PromptRow
from circuitft.errors import DataError

# How many draws one row may take before the task's parameters are declared unusable.
MAX_DRAWS = 1000
# Key of the optional predicate on clean prompts that the task layer adds to ``params`` when it draws one
# split: a drawer may skip (and redraw) a problem whose clean prompt fails it before doing more work.
KEEP_CLEAN = "_keep_clean"

Drawer = Callable[[random.Random, int, Mapping[str, Any]], PromptRow]
# The clean prompts of every problem, one list per slot class (row ``slot`` draws from ``lists[slot % len]``).
ProblemSpace = Callable[[Mapping[str, Any]], "list[list[str]] | None"]


@dataclass(frozen=True)
class Param:
    """A task parameter: its type, default (``None``: the task computes one) and a one-line help."""

    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task.

    ``draw(rng, slot, params)`` returns row number ``slot`` using only ``rng`` (so a row stream is
    reproducible from the seed); ``check(params)`` raises :class:`DataError` for unusable parameters.

    Splits need nothing from a task: a problem's split (train/val/test) is a stable hash of its clean
    prompt (:mod:`circuitft.data.splits`), and rows of one split are drawn by rejecting the draws of the
    others. A task whose problem space is small enough to list may set the optional hook
    ``problem_space(params)``: the clean prompts of every distinct problem that ``draw`` can return, as one
    list per slot class (row ``slot`` is drawn from list ``slot % len(lists)``; a task whose rows do not
    depend on the slot returns one list), or ``None`` when the space is too large to list for these
    parameters. With it, split sizes are exact (``circuitft tasks show``), asking a val/test split for more
    distinct rows than it holds fails at once, and train switches to sampling with replacement exactly when
    it must; without it, sizes are reported as "large" and exhaustion is detected by repeated draws.
    A drawer may also read ``params.get(KEEP_CLEAN)`` (a predicate on the clean prompt, present while one
    split is drawn) to redraw problems of other splits early, e.g. before computing a corruption; this is
    only a speed-up, as the task layer rejects them anyway.
    """

    name: str
    rule: str
    draw: Drawer
    params: Mapping[str, Param] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None
    defaults: Callable[[dict[str, Any]], None] | None = None  # fills parameters whose default is None
    problem_space: ProblemSpace | None = None  # optional: every problem's clean prompt (see above)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validated, typed parameters: defaults plus ``given`` (values may be strings, as from the CLI)."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            valid = ", ".join(self.params) or "none"
            raise DataError(f"task {self.name}: unknown parameter {unknown[0]!r} (valid parameters: {valid})")
        out: dict[str, Any] = {}
        for key, p in self.params.items():
            value = given.get(key, p.default)
            if value is not None:
                value = _coerce(self.name, key, value, p)
            out[key] = value
        if self.defaults is not None:
            self.defaults(out)
        if self.check is not None:
            self.check(out)
        return out


def _coerce(task: str, key: str, value: Any, p: Param) -> Any:
    if p.type is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"task {task}: parameter {key!r} must be an integer, got {value!r}")
        try:
            value = int(value)
        except ValueError:
            raise DataError(f"task {task}: parameter {key!r} must be an integer, got {value!r}") from None
    elif p.type is str:
        if not isinstance(value, str):
            raise DataError(f"task {task}: parameter {key!r} must be a string, got {value!r}")
    if p.choices is not None and value not in p.choices:
        raise DataError(
            f"task {task}: parameter {key!r} must be one of {', '.join(p.choices)}, got {value!r}"
        )
    return value
