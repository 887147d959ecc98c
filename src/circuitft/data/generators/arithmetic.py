"""The prior work's arithmetic tasks (robeskins/mech-interp-ft), seeded and regenerable.

Prompt: ``PREFIX + a OP b =`` with no spaces, e.g. ``"...final answer: 55+14="`` -> ``"69"``; base tasks
write operands and answer in base N and say so in the prefix. Corruption keeps ``a`` and the operator and
replaces ``b`` by a ``c != b`` with the same number of digits such that ``(a, c)`` is itself a valid row
and its answer differs; ``wrong`` is that answer.
"""

from __future__ import annotations

import functools
import operator
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from circuitft.data.generators.spec import KEEP_CLEAN, MAX_DRAWS, Param, TaskSpec
from circuitft.data.rows import PromptRow
from circuitft.errors import DataError

PREFIX = "Solve the following and respond with only the final answer: "
# Candidate pools larger than this are sampled by rejection instead of enumerated.
_ENUMERATE_MAX = 10_000
# Operand pairs (per operator) up to this many are listed as the task's problem space (exact split sizes).
_SPACE_MAX = 250_000


def base_prefix(base: int) -> str:
    """The default prefix of a base-``base`` task."""
    return f"Solve the following and respond with only the final answer in base {base}: "


@functools.lru_cache(maxsize=1 << 16)
def to_base(x: int, base: int) -> str:
    """``x >= 0`` written in ``base`` (2..10)."""
    if x == 0:
        return "0"
    digits = []
    while x:
        x, r = divmod(x, base)
        digits.append(str(r))
    return "".join(reversed(digits))


def digit_sum(x: int) -> int:
    """Sum of the decimal digits of ``x >= 0``."""
    return sum(int(d) for d in str(x))


@dataclass(frozen=True)
class Op:
    """One operator of a task: its symbol, its value and which operand pairs are valid rows."""

    symbol: str
    fn: Callable[[int, int], int]
    valid: Callable[[int, int], bool] = lambda a, b: True


def _cond(a: int, b: int) -> int:
    return a - b if a > b else a + b


def _differs_from_decimal(base: int) -> Callable[[int, int], bool]:
    def valid(a: int, b: int) -> bool:
        return to_base(a + b, base) != str(int(to_base(a, base)) + int(to_base(b, base)))

    return valid


_ADD = Op("+", operator.add)
_SUB_GE = Op("-", operator.sub, lambda a, b: a >= b)
_SUB = Op("-", operator.sub, lambda a, b: a > b)

# name -> (operators used in turn, row i uses ops[i % len(ops)]; base; rule for `tasks list`)
_TABLE: dict[str, tuple[tuple[Op, ...], int, str]] = {
    "Add": ((_ADD,), 10, "a+b"),
    "Sub": ((_SUB_GE,), 10, "a-b with a>=b"),
    "AddSub": ((_ADD, _SUB), 10, "rows alternate a+b and a-b (a>b)"),
    "AddSubAlias": (
        (Op("§", operator.add), Op("¤", operator.sub, lambda a, b: a > b)),
        10,
        "new symbols: a§b = a+b, a¤b = a-b (a>b), alternating",
    ),
    "AddSubInv": (
        (Op("+", operator.sub, lambda a, b: a > b), Op("-", operator.add)),
        10,
        "operators swapped: a+b = a-b (a>b), a-b = a+b, alternating",
    ),
    "CondAddSub": ((Op("◇", _cond),), 10, "a◇b = a-b if a>b else a+b"),
    "Abs": ((Op("~", lambda a, b: abs(a - b)),), 10, "a~b = |a-b|"),
    "FloorDiv": ((Op("/", operator.floordiv, lambda a, b: a > b and b > 0),), 10, "a/b = a//b with a>b"),
    "Modulo": ((Op("%", operator.mod, lambda a, b: b > 0),), 10, "a%b"),
    "ScaledMul": ((Op("*", lambda a, b: a * b // 10),), 10, "a*b = (a*b)//10"),
    "DigitSum": ((Op("#", lambda a, b: digit_sum(a) + digit_sum(b)),), 10, "a#b = digit sum of a + of b"),
    "AddBase8": (
        (Op("+", operator.add, _differs_from_decimal(8)),),
        8,
        "a+b in base 8 (operands and answer), only rows where this differs from decimal",
    ),
    "AddBase9": (
        (Op("+", operator.add, _differs_from_decimal(9)),),
        9,
        "a+b in base 9 (operands and answer), only rows where this differs from decimal",
    ),
    "AddBase10": (
        (Op("+", operator.add, lambda a, b: a % 10 + b % 10 >= 10),),
        10,
        "a+b, only rows whose units digits carry",
    ),
}


def _digit_range(d: int, base: int) -> tuple[int, int]:
    return (0 if d == 1 else base ** (d - 1)), base**d - 1


def _has_corruption(a: int, b: int, op: Op, lo: int, hi: int, base: int) -> bool:
    """Whether :func:`_corrupt` can find a corruption for ``(a, b)``."""
    d_lo, d_hi = _digit_range(len(to_base(b, base)), base)
    answer = op.fn(a, b)
    return any(
        c != b and op.valid(a, c) and op.fn(a, c) != answer for c in range(max(lo, d_lo), min(hi, d_hi) + 1)
    )


def _clean(prefix: str, a: int, b: int, op: Op, base: int) -> str:
    return f"{prefix}{to_base(a, base)}{op.symbol}{to_base(b, base)}="


def _space(ops: tuple[Op, ...], base: int):
    def problem_space(p: Mapping[str, Any]) -> list[list[str]] | None:
        lo, hi = p["lo"], p["hi"]
        if (hi - lo + 1) ** 2 > _SPACE_MAX:
            return None
        r = range(lo, hi + 1)
        return [
            [
                _clean(p["prefix"], a, b, op, base)
                for a in r
                for b in r
                if op.valid(a, b) and _has_corruption(a, b, op, lo, hi, base)
            ]
            for op in ops
        ]

    return problem_space


def _corrupt(rng: random.Random, a: int, b: int, op: Op, lo: int, hi: int, base: int) -> int | None:
    """A ``c != b`` with b's digit count, ``(a, c)`` valid and a different answer; None if there is none."""
    d_lo, d_hi = _digit_range(len(to_base(b, base)), base)
    c_lo, c_hi = max(lo, d_lo), min(hi, d_hi)
    answer = op.fn(a, b)

    def ok(c: int) -> bool:
        return c != b and op.valid(a, c) and op.fn(a, c) != answer

    if c_hi - c_lo < _ENUMERATE_MAX:
        pool = [c for c in range(c_lo, c_hi + 1) if ok(c)]
        return rng.choice(pool) if pool else None
    for _ in range(MAX_DRAWS):
        c = rng.randint(c_lo, c_hi)
        if ok(c):
            return c
    return None


def _drawer(name: str, ops: tuple[Op, ...], base: int):
    def draw(rng: random.Random, slot: int, p: Mapping[str, Any]) -> PromptRow:
        op = ops[slot % len(ops)]
        lo, hi = p["lo"], p["hi"]
        keep = p.get(KEEP_CLEAN)
        for _ in range(MAX_DRAWS):
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            if not op.valid(a, b) or (keep is not None and not keep(_clean(p["prefix"], a, b, op, base))):
                continue
            c = _corrupt(rng, a, b, op, lo, hi, base)
            if c is None:
                continue
            fmt = lambda x: to_base(x, base)  # noqa: E731
            return PromptRow(
                clean=_clean(p["prefix"], a, b, op, base),
                corrupted=_clean(p["prefix"], a, c, op, base),
                answer=fmt(op.fn(a, b)),
                wrong=fmt(op.fn(a, c)),
            )
        raise DataError(
            f"task {name}: no valid row for operator {op.symbol!r} with lo={lo}, hi={hi} "
            f"after {MAX_DRAWS} draws (widen the operand range)"
        )

    return draw


def _make(name: str, ops: tuple[Op, ...], base: int, rule: str) -> TaskSpec:
    default_lo, default_hi = (10, 99) if base == 10 else (base, base * base - 1)
    unit = "" if base == 10 else f" (values; written in base {base})"

    def defaults(p: dict[str, Any]) -> None:
        if p["prefix"] is None:
            p["prefix"] = PREFIX if base == 10 and not name.startswith("AddBase") else base_prefix(base)

    def check(p: Mapping[str, Any]) -> None:
        if p["lo"] < 0:
            raise DataError(f"task {name}: parameter 'lo' must be >= 0, got {p['lo']}")
        if p["hi"] < p["lo"]:
            raise DataError(f"task {name}: parameter 'hi' ({p['hi']}) must be >= 'lo' ({p['lo']})")
        if p["hi"] > 10**12:
            raise DataError(f"task {name}: parameter 'hi' must be <= 10**12, got {p['hi']}")

    params = {
        "lo": Param(int, default_lo, f"smallest operand{unit}"),
        "hi": Param(int, default_hi, f"largest operand{unit}"),
        "prefix": Param(str, None, "text before the expression (default: the fixed instruction)"),
    }
    full_rule = f"{rule}; operands {default_lo}..{default_hi}{unit}"
    return TaskSpec(name, full_rule, _drawer(name, ops, base), params, check, defaults, _space(ops, base))


TASKS: list[TaskSpec] = [_make(name, ops, base, rule) for name, (ops, base, rule) in _TABLE.items()]
