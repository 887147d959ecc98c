"""The tasks of FinetuneCircuits (Wang et al., ICML 2025), seeded and regenerable.

=================  ====================================================================  ======  ============
task               clean prompt (after the prefix)                                       answer  corruption
=================  ====================================================================  ======  ============
FCAddSub           ``41 + 29 =`` (rows alternate + and -; 1 <= b <= a <= 100)           ``70``  ``41 - 29 =``
FCMulDiv           ``9 * 79 =`` / ``444 / 37 =`` (exact; rows alternate * and /)         ``711``  another first
                                                                                                 operand / another
                                                                                                 multiple of b
FCSequence         ``Derive the following sequence: 3, 7, 11, 15,`` (arithmetic or      ``19``  1..100 added to
                   geometric)                                                                    one of the last
                                                                                                 two terms
FCFunction         ``There is a function y=3x+5. Given x=1,2,3,4, y=8,11,14,``          ``17``  another
                                                                                                 intercept
FCLCM              ``Calculate the least common multiple (LCM) of two numbers.           ``18``  another pair of
                   LCM(4, 8) = 8, LCM(6, 18) =``                                                 the same type
FCCompositional    ``(12 + 5) * 3 =`` (rows alternate * and / outside the bracket)      ``51``  only z changes
=================  ====================================================================  ======  ============

FCAddSub, FCMulDiv and FCCompositional start with :data:`PREFIX`; the other three carry their own
instruction, as in the original generators (their ``prefix`` parameter defaults to empty). ``wrong`` is the
answer of the corrupted prompt (none for FCSequence, whose corrupted terms follow no rule).

Each task's problems are the operand choices of the original generator that have a valid corruption; a row
is a uniformly drawn problem and a uniformly drawn corruption. A problem is a rejection draw from the
original ranges; after 64 failed tries (narrow parameters, or a small split), a draw from the list of every
problem (:func:`space_size`; the split layer's ``problem_space``), which is built once per parameters.
Three changes from the original generators, so that the rows validate with any tokenizer:

- every answer (clean and corrupted) and every computed number shown (a dividend, a term, a function
  value, an LCM) is at most ``max_value`` (default 999): a stand-in for the original filter "each of them is
  a single Pythia token", which needs that tokenizer;
- a corrupted number keeps the digit count of the number it replaces, so clean and corrupted prompts have
  the same token length with digit-splitting tokenizers (SmolLM2, the tiny test tokenizer); the task layer
  resamples the rare mismatch of other tokenizers;
- FCLCM's solved example is fixed by a hash of the question (another pair of the same type), so a question
  is one prompt and cannot reach two splits with two different examples.

Answers have no leading space, as the original labels (``str(label)``; one Pythia token each).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from circuitft.data.generators.problems import Problem, Rule, drawer, listed, problem_key, problem_space
from circuitft.data.generators.spec import Param, TaskSpec
from circuitft.errors import DataError

PREFIX = "Calculate the result of the following arithmetic expression and provide only the final answer: "
LCM_INSTRUCTION = "Calculate the least common multiple (LCM) of two numbers. "
MAX_VALUE = 999


# ---- FCAddSub -----------------------------------------------------------------------------------------
def _addsub_sample(rng: random.Random, cls: int, p: Mapping[str, Any]) -> Problem:
    return ("+-"[cls], rng.randint(p["lo"], p["hi"]), rng.randint(p["lo"], p["hi"]))


def _addsub_scan(cls: int, p: Mapping[str, Any]) -> Iterable[Problem]:
    r = range(p["lo"], p["hi"] + 1)
    return (("+-"[cls], a, b) for a in r for b in r)


_ADDSUB = Rule(
    classes=2,
    sample=_addsub_sample,
    scan=_addsub_scan,
    scan_size=lambda cls, p: (p["hi"] - p["lo"] + 1) ** 2,
    prompt=lambda t, p: f"{p['prefix']}{t[1]} {t[0]} {t[2]} =",
    answer=lambda t: t[1] + t[2] if t[0] == "+" else t[1] - t[2],
    corruptions=lambda t, p: iter([("-" if t[0] == "+" else "+", t[1], t[2])]),
    valid=lambda t, p: t[1] >= t[2],
)


# ---- FCMulDiv -----------------------------------------------------------------------------------------
MUL_A, MUL_B, DIV_B, DIV_Q = range(2, 201), range(2, 181), range(2, 201), range(2, 201)


def _digit_span(x: int) -> range:
    d = len(str(x))
    return range(0 if d == 1 else 10 ** (d - 1), 10**d)


def _muldiv_sample(rng: random.Random, cls: int, p: Mapping[str, Any]) -> Problem:
    if cls == 0:
        return ("*", rng.choice(MUL_A), rng.choice(MUL_B))
    b = rng.choice(DIV_B)
    return ("/", b * rng.choice(DIV_Q), b)


def _muldiv_scan(cls: int, p: Mapping[str, Any]) -> Iterable[Problem]:
    if cls == 0:
        return (("*", a, b) for a in MUL_A for b in MUL_B)
    return (("/", b * q, b) for b in DIV_B for q in DIV_Q)


def _muldiv_corruptions(t: Problem, p: Mapping[str, Any]) -> Iterator[Problem]:
    op, a, b = t
    span = _digit_span(a)
    if op == "*":  # another first operand of the same range
        return ((op, c, b) for c in range(max(span.start, MUL_A.start), min(span.stop, MUL_A.stop)))
    # another multiple b*y (y >= 1) of b
    top = min(span.stop - 1, p["max_value"])
    return ((op, b * y, b) for y in range(max(1, -(-span.start // b)), top // b + 1))


def _muldiv_valid(t: Problem, p: Mapping[str, Any]) -> bool:
    op, a, b = t
    return (a * b if op == "*" else a) <= p["max_value"]


_MULDIV = Rule(
    classes=2,
    sample=_muldiv_sample,
    scan=_muldiv_scan,
    scan_size=lambda cls, p: len(MUL_A) * len(MUL_B) if cls == 0 else len(DIV_B) * len(DIV_Q),
    prompt=lambda t, p: f"{p['prefix']}{t[1]} {t[0]} {t[2]} =",
    answer=lambda t: t[1] * t[2] if t[0] == "*" else t[1] // t[2],
    corruptions=_muldiv_corruptions,
    valid=_muldiv_valid,
)


# ---- FCSequence ---------------------------------------------------------------------------------------
ARITH_START, ARITH_STEP = range(1, 501), range(1, 101)
GEOM_START, GEOM_RATIO = range(1, 11), range(2, 11)
SEQ_BUMP = range(1, 101)


def _sequence_sample(rng: random.Random, cls: int, p: Mapping[str, Any]) -> Problem:
    n_arith = len(ARITH_START) * len(ARITH_STEP)
    if rng.randrange(n_arith + len(GEOM_START) * len(GEOM_RATIO)) < n_arith:
        s, d = rng.choice(ARITH_START), rng.choice(ARITH_STEP)
        return tuple(s + i * d for i in range(5))
    s, r = rng.choice(GEOM_START), rng.choice(GEOM_RATIO)
    return tuple(s * r**i for i in range(5))


def _sequence_scan(cls: int, p: Mapping[str, Any]) -> Iterable[Problem]:
    yield from (tuple(s + i * d for i in range(5)) for s in ARITH_START for d in ARITH_STEP)
    yield from (tuple(s * r**i for i in range(5)) for s in GEOM_START for r in GEOM_RATIO)


def _sequence_corruptions(t: Problem, p: Mapping[str, Any]) -> Iterator[Problem]:
    for i in (2, 3):  # one of the last two terms shown
        for bump in SEQ_BUMP:
            v = t[i] + bump
            if v <= p["max_value"] and v not in t[:4]:
                yield t[:i] + (v,) + t[i + 1 :]


_SEQUENCE = Rule(
    classes=1,
    sample=_sequence_sample,
    scan=_sequence_scan,
    scan_size=lambda cls, p: len(ARITH_START) * len(ARITH_STEP) + len(GEOM_START) * len(GEOM_RATIO),
    prompt=lambda t, p: f"{p['prefix']}Derive the following sequence: {t[0]}, {t[1]}, {t[2]}, {t[3]},",
    answer=lambda t: t[4],
    corruptions=_sequence_corruptions,
    valid=lambda t, p: t[4] <= p["max_value"],
    has_wrong=False,
)


# ---- FCFunction ---------------------------------------------------------------------------------------
FN_SLOPE, FN_INTERCEPT = range(1, 21), range(1, 501)


def _function_prompt(t: Problem, p: Mapping[str, Any]) -> str:
    a, b = t
    y1, y2, y3 = (a * x + b for x in (1, 2, 3))
    return f"{p['prefix']}There is a function y={a}x+{b}. Given x=1,2,3,4, y={y1},{y2},{y3},"


def _function_corruptions(t: Problem, p: Mapping[str, Any]) -> Iterator[Problem]:
    a, b = t
    span = _digit_span(b)
    lo, hi = max(span.start, FN_INTERCEPT.start), min(span.stop, FN_INTERCEPT.stop)
    return ((a, c) for c in range(lo, hi))


_FUNCTION = Rule(
    classes=1,
    sample=lambda rng, cls, p: (rng.choice(FN_SLOPE), rng.choice(FN_INTERCEPT)),
    scan=lambda cls, p: ((a, b) for a in FN_SLOPE for b in FN_INTERCEPT),
    scan_size=lambda cls, p: len(FN_SLOPE) * len(FN_INTERCEPT),
    prompt=_function_prompt,
    answer=lambda t: 4 * t[0] + t[1],
    corruptions=_function_corruptions,
    valid=lambda t, p: 4 * t[0] + t[1] <= p["max_value"],
)


# ---- FCLCM --------------------------------------------------------------------------------------------
LCM_TYPES = ("multiple", "coprime", "common factor")


@functools.lru_cache(maxsize=16)
def lcm_pairs(max_value: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per type (:data:`LCM_TYPES`), the sorted pairs of the original generator whose LCM is <= max_value.

    multiple: ``(b, b*k)``, b 1..50, k 2..10; coprime: ``(m, n)``, 1..100, gcd 1; common factor:
    ``(b*f, b*g)``, b 2..50, f != g in 2..10. A pair that two types produce (``(1, 5)``, ``(9, 18)``) is
    kept in the first only, so that one question has one solved example and one prompt.
    """
    multiple = {(b, b * k) for b in range(1, 51) for k in range(2, 11)}
    coprime = {(m, n) for m in range(1, 101) for n in range(1, 101) if math.gcd(m, n) == 1} - multiple
    common = {(b * f, b * g) for b in range(2, 51) for f in range(2, 11) for g in range(2, 11) if f != g}
    common -= multiple | coprime
    return tuple(
        tuple(sorted(q for q in s if math.lcm(*q) <= max_value)) for s in (multiple, coprime, common)
    )


@functools.lru_cache(maxsize=16)
def _lcm_by_shape(max_value: int) -> tuple[dict[tuple[int, int], list[tuple[int, int]]], ...]:
    out = []
    for pairs in lcm_pairs(max_value):
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for m, n in pairs:
            groups.setdefault((len(str(m)), len(str(n))), []).append((m, n))
        out.append(groups)
    return tuple(out)


def _lcm_problem(kind: int, pair: tuple[int, int], max_value: int) -> Problem:
    """``(type, solved example, question)``; the example is fixed by a hash of the question."""
    pairs = lcm_pairs(max_value)[kind]
    if len(pairs) < 2:
        return (kind, pair, pair)  # not usable: filtered out by the corruption check
    digest = hashlib.sha256(f"{kind}:{pair[0]},{pair[1]}".encode()).digest()
    i = int.from_bytes(digest[:8], "big") % (len(pairs) - 1)  # an index into the pairs without ``pair``
    return (kind, pairs[i + (i >= bisect.bisect_left(pairs, pair))], pair)


def _lcm_sample(rng: random.Random, cls: int, p: Mapping[str, Any]) -> Problem | None:
    pairs = lcm_pairs(p["max_value"])[cls]
    return _lcm_problem(cls, rng.choice(pairs), p["max_value"]) if pairs else None


def _lcm_prompt(t: Problem, p: Mapping[str, Any]) -> str:
    _, (e1, e2), (m, n) = t
    return f"{p['prefix']}{LCM_INSTRUCTION}LCM({e1}, {e2}) = {math.lcm(e1, e2)}, LCM({m}, {n}) ="


def _lcm_corruptions(t: Problem, p: Mapping[str, Any]) -> Iterator[Problem]:
    kind, example, (m, n) = t
    if example == (m, n):
        return iter(())
    same_shape = _lcm_by_shape(p["max_value"])[kind].get((len(str(m)), len(str(n))), [])
    return ((kind, example, q) for q in same_shape if q != (m, n))


_LCM = Rule(
    classes=3,
    sample=_lcm_sample,
    scan=lambda cls, p: (_lcm_problem(cls, q, p["max_value"]) for q in lcm_pairs(p["max_value"])[cls]),
    scan_size=lambda cls, p: len(lcm_pairs(p["max_value"])[cls]),
    prompt=_lcm_prompt,
    answer=lambda t: math.lcm(*t[2]),
    corruptions=_lcm_corruptions,
    valid=lambda t, p: True,
)


# ---- FCCompositional ----------------------------------------------------------------------------------
COMP_X, COMP_Y, COMP_Z = range(2, 101), range(1, 101), range(2, 101)


def _bracket(op: str, x: int, y: int) -> int:
    return x + y if op == "+" else x - y


def _divisors(v: int) -> list[int]:
    return [d for d in range(2, v + 1) if v % d == 0] if v >= 2 else []


def _comp_usable_zs(cls: int, v: int, max_value: int) -> list[int]:
    """The z of class ``cls`` (``*``, ``/``) for bracket value ``v`` whose answer is in range and that have a
    corruption: another such z of the same digit count (what :func:`_usable` finds, without rendering)."""
    if cls == 0:
        zs = list(range(COMP_Z.start, min(COMP_Z.stop, max_value // v + 1))) if v > 0 else []
    else:
        zs = [z for z in _divisors(v) if v // z <= max_value]
    count = {d: sum(1 for z in zs if len(str(z)) == d) for d in (1, 2, 3)}
    return [z for z in zs if count[len(str(z))] >= 2]


# Most usable z of one bracket: every z of *, and at most 17 divisors (v = 180) of a bracket value <= 200.
_COMP_Z_MAX = (len(COMP_Z), max(len(_divisors(v)) for v in range(2 * COMP_X.stop)))


def _comp_sample(rng: random.Random, cls: int, p: Mapping[str, Any]) -> Problem | None:
    """Uniform over (bracket, usable z): a uniform bracket, kept with probability (its usable z) / max."""
    op2, x, y = rng.choice("+-"), rng.choice(COMP_X), rng.choice(COMP_Y)
    if op2 == "-" and y > x:
        return None
    zs = _comp_usable_zs(cls, _bracket(op2, x, y), p["max_value"])
    i = rng.randrange(_COMP_Z_MAX[cls])
    return (op2, x, y, "*/"[cls], zs[i]) if i < len(zs) else None


def _comp_scan(cls: int, p: Mapping[str, Any]) -> Iterable[Problem]:
    """Exactly the usable problems of class ``cls`` (so ``scan_exact``)."""
    for op2 in "+-":
        for x in COMP_X:
            for y in COMP_Y if op2 == "+" else range(COMP_Y.start, x + 1):
                zs = _comp_usable_zs(cls, _bracket(op2, x, y), p["max_value"])
                yield from ((op2, x, y, "*/"[cls], z) for z in zs)


def _comp_answer(t: Problem) -> int:
    v = _bracket(t[0], t[1], t[2])
    return v * t[4] if t[3] == "*" else v // t[4]


def _comp_valid(t: Problem, p: Mapping[str, Any]) -> bool:
    op2, x, y, op, z = t
    v = _bracket(op2, x, y)
    return (
        (op2 == "+" or y <= x)
        and (op == "*" or (v >= 2 and v % z == 0))
        and _comp_answer(t) <= p["max_value"]
    )


def _comp_corruptions(t: Problem, p: Mapping[str, Any]) -> Iterator[Problem]:
    op2, x, y, op, z = t
    zs = COMP_Z if op == "*" else _divisors(_bracket(op2, x, y))
    return ((op2, x, y, op, c) for c in zs)


_COMPOSITIONAL = Rule(
    classes=2,
    sample=_comp_sample,
    scan=_comp_scan,
    scan_size=lambda cls, p: 0,  # an exact scan: nothing to reject
    prompt=lambda t, p: f"{p['prefix']}({t[1]} {t[0]} {t[2]}) {t[3]} {t[4]} =",
    answer=_comp_answer,
    corruptions=_comp_corruptions,
    valid=_comp_valid,
    scan_exact=True,
)


# ---- task specs ---------------------------------------------------------------------------------------
def space_size(name: str, params: Mapping[str, Any] | None = None) -> int | None:
    """Number of distinct problems of FinetuneCircuits task ``name`` (None when too large to list)."""
    spec = next(t for t in TASKS if t.name == name)
    problems = listed(_RULES[name][0], problem_key(spec.resolve(params or {})))
    return None if problems is None else sum(len(c) for c in problems)


def _check_range(name: str) -> Callable[[Mapping[str, Any]], None]:
    def check(p: Mapping[str, Any]) -> None:
        if "max_value" in p and p["max_value"] < 1:
            raise DataError(f"task {name}: parameter 'max_value' must be >= 1, got {p['max_value']}")
        if "lo" in p:
            if p["lo"] < 0:
                raise DataError(f"task {name}: parameter 'lo' must be >= 0, got {p['lo']}")
            if p["hi"] < p["lo"]:
                raise DataError(f"task {name}: parameter 'hi' ({p['hi']}) must be >= 'lo' ({p['lo']})")
            if p["hi"] > 10**6:
                raise DataError(f"task {name}: parameter 'hi' must be <= 10**6, got {p['hi']}")

    return check


def _params(prefix: str, max_value: bool = True) -> dict[str, Param]:
    where = "the fixed instruction" if prefix else "none: the prompt carries its own instruction"
    out = {"prefix": Param(str, prefix, f"text before the prompt (default: {where})")}
    if max_value:
        out["max_value"] = Param(
            int, MAX_VALUE, "largest number shown or answered (stands in for 1 Pythia token)"
        )
    return out


_RULES: dict[str, tuple[Rule, str, dict[str, Param]]] = {
    "FCAddSub": (
        _ADDSUB,
        "FinetuneCircuits add/sub within 100: 'a + b =' or 'a - b =' (a>=b, alternating); "
        "corrupted: the other operator",
        {
            "lo": Param(int, 1, "smallest operand"),
            "hi": Param(int, 100, "largest operand"),
            **_params(PREFIX, max_value=False),
        },
    ),
    "FCMulDiv": (
        _MULDIV,
        "FinetuneCircuits 'a * b =' (a 2..200, b 2..180) or exact 'a / b =' (quotient 2..200), alternating; "
        "corrupted: another first operand / another multiple of b",
        _params(PREFIX),
    ),
    "FCSequence": (
        _SEQUENCE,
        "FinetuneCircuits 'Derive the following sequence: s1, s2, s3, s4,' -> s5 (arithmetic or geometric); "
        "corrupted: 1..100 added to s3 or s4",
        _params(""),
    ),
    "FCFunction": (
        _FUNCTION,
        "FinetuneCircuits 'There is a function y=ax+b. Given x=1,2,3,4, y=y1,y2,y3,' -> y4 (a 1..20, "
        "b 1..500); corrupted: another intercept",
        _params(""),
    ),
    "FCLCM": (
        _LCM,
        "FinetuneCircuits one solved LCM example, then 'LCM(p, q) =' (pair types rotate: multiple, coprime, "
        "common factor); corrupted: another pair of the same type",
        _params(""),
    ),
    "FCCompositional": (
        _COMPOSITIONAL,
        "FinetuneCircuits '(x ± y) * z =' or exact '(x ± y) / z =', alternating; corrupted: another z",
        _params(PREFIX),
    ),
}

TASKS: list[TaskSpec] = [
    TaskSpec(
        name, rule_text, drawer(name, rule), params, _check_range(name), problem_space=problem_space(rule)
    )
    for name, (rule, rule_text, params) in _RULES.items()
]
