"""Built-in tasks: every rule recomputed from the parsed prompt, determinism, corruption, make_pairs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from circuitft.data.rows import PromptRow
from circuitft.data.tasks import describe, make_pairs, make_rows, task_names
from circuitft.errors import DataError

PREFIX = "Solve the following and respond with only the final answer: "
ARITH = [
    "Add",
    "Sub",
    "AddSub",
    "AddSubAlias",
    "AddSubInv",
    "CondAddSub",
    "Abs",
    "FloorDiv",
    "Modulo",
    "ScaledMul",
    "DigitSum",
    "AddBase8",
    "AddBase9",
    "AddBase10",
]
BASES = {"AddBase8": 8, "AddBase9": 9, "AddBase10": 10}


def _ds(x: int) -> int:
    return sum(map(int, str(x)))


def _true(a: int, b: int) -> bool:
    return True


def _differs(base: int):
    return lambda a, b: (
        np.base_repr(a + b, base) != str(int(np.base_repr(a, base)) + int(np.base_repr(b, base)))
    )


# Independent statement of the prior work's rules: task -> operator symbol -> (value, valid operand pair).
RULES = {
    "Add": {"+": (lambda a, b: a + b, _true)},
    "Sub": {"-": (lambda a, b: a - b, lambda a, b: a >= b)},
    "AddSub": {"+": (lambda a, b: a + b, _true), "-": (lambda a, b: a - b, lambda a, b: a > b)},
    "AddSubAlias": {"§": (lambda a, b: a + b, _true), "¤": (lambda a, b: a - b, lambda a, b: a > b)},
    "AddSubInv": {"+": (lambda a, b: a - b, lambda a, b: a > b), "-": (lambda a, b: a + b, _true)},
    "CondAddSub": {"◇": (lambda a, b: a - b if a > b else a + b, _true)},
    "Abs": {"~": (lambda a, b: abs(a - b), _true)},
    "FloorDiv": {"/": (lambda a, b: a // b, lambda a, b: a > b)},
    "Modulo": {"%": (lambda a, b: a % b, _true)},
    "ScaledMul": {"*": (lambda a, b: a * b // 10, _true)},
    "DigitSum": {"#": (lambda a, b: _ds(a) + _ds(b), _true)},
    "AddBase8": {"+": (lambda a, b: a + b, _differs(8))},
    "AddBase9": {"+": (lambda a, b: a + b, _differs(9))},
    "AddBase10": {"+": (lambda a, b: a + b, lambda a, b: a % 10 + b % 10 >= 10)},
}
EXPR = re.compile(r"^([0-9]+)(\D)([0-9]+)=$")


def _check_arith(name: str, rows: list[PromptRow], lo: int, hi: int) -> None:
    base = BASES.get(name, 10)
    prefix = PREFIX if name not in BASES else PREFIX.replace("answer:", f"answer in base {base}:")
    ops = list(RULES[name])
    for i, row in enumerate(rows):
        assert row.clean.startswith(prefix) and row.corrupted.startswith(prefix)
        a_s, op, b_s = EXPR.match(row.clean[len(prefix) :]).groups()
        a2_s, op2, c_s = EXPR.match(row.corrupted[len(prefix) :]).groups()
        assert op == ops[i % len(ops)], "operators alternate row by row"
        assert (a2_s, op2) == (a_s, op), "corruption keeps the first operand and the operator"
        a, b, c = int(a_s, base), int(b_s, base), int(c_s, base)
        assert np.base_repr(a, base) == a_s and np.base_repr(c, base) == c_s
        assert lo <= a <= hi and lo <= b <= hi and lo <= c <= hi
        fn, valid = RULES[name][op]
        assert valid(a, b) and valid(a, c)
        assert row.answer == np.base_repr(fn(a, b), base)
        assert row.wrong == np.base_repr(fn(a, c), base)
        assert c != b and len(c_s) == len(b_s)
        assert row.wrong != row.answer
        assert row.corrupted != row.clean


@pytest.mark.parametrize("name", ARITH)
def test_arithmetic_rules_hold_on_every_row(name):
    rows = make_rows(name, 300, seed=3)
    base = BASES.get(name, 10)
    lo, hi = (10, 99) if base == 10 else (base, base * base - 1)
    _check_arith(name, rows, lo, hi)
    assert len({r.clean for r in rows}) > 100, "rows vary"


@pytest.mark.parametrize("name", ARITH)
def test_arithmetic_single_digit_demo_range(name):
    rows = make_rows(name, 60, seed=0, lo=1, hi="7")  # strings are converted, as from the CLI
    _check_arith(name, rows, 1, 7)
    assert all(len(EXPR.match(r.clean.split(": ")[1]).group(3)) == 1 for r in rows)


def test_alternating_tasks_are_half_and_half():
    rows = make_rows("AddSub", 10, seed=0)
    assert [("+" in r.clean.split(": ")[1]) for r in rows] == [True, False] * 5


IOI = re.compile(
    r"^(?:When|Then,|After|While) (\w+) and (\w+) (?:went to|were at) the (\w+)[,.] (\w+) gave a (\w+) to$"
)


def _skeleton(text: str) -> str:
    """The IOI sentence with its three name slots blanked."""
    m = IOI.match(text)
    out = list(text)
    for g in (4, 2, 1):
        out[m.start(g) : m.end(g)] = "_"
    return "".join(out)


def test_ioi_rule():
    rows = make_rows("IOI", 300, seed=1)
    orders = set()
    for row in rows:
        a, b, place, s, obj = IOI.match(row.clean).groups()
        ca, cb, cplace, cs, cobj = IOI.match(row.corrupted).groups()
        assert s in (a, b) and a != b
        io = b if s == a else a
        orders.add(s == a)
        assert row.answer == " " + io and row.wrong == " " + s
        assert (cplace, cobj) == (place, obj)
        assert len({ca, cb, cs, a, b}) == 5, "ABC corruption: three new distinct names"
        assert _skeleton(row.corrupted) == _skeleton(row.clean), "same template, place and object"
    assert orders == {True, False}, "both name orders occur"


GT = re.compile(r"^The (\w+) lasted from the year (1[1-7])(\d\d) to the year (1[1-7])$")


@pytest.mark.parametrize("end", ["random", "next"])
def test_greater_than_rule(end):
    rows = make_rows("GreaterThan", 300, seed=2, end=end)
    for row in rows:
        event, century, yy, century2 = GT.match(row.clean).groups()
        assert century == century2
        assert row.corrupted == row.clean.replace(f"year {century}{yy}", f"year {century}01")
        assert row.corrupted != row.clean
        assert len(row.answer) == 2 and int(row.answer) > int(yy)
        if end == "next":
            assert int(row.answer) == int(yy) + 1
        assert row.wrong == yy and row.wrong != row.answer
    if end == "random":
        assert len({int(r.answer) - int(GT.match(r.clean).group(3)) for r in rows}) > 10


@pytest.mark.parametrize("name", task_names())
def test_determinism_and_seed(name):
    assert make_rows(name, 40, seed=7) == make_rows(name, 40, seed=7)
    assert make_rows(name, 40, seed=7) != make_rows(name, 40, seed=8)
    assert make_rows(name, 10, seed=7) == make_rows(name, 40, seed=7)[:10], "a prefix of the same stream"
    assert name in describe(name) or "e.g." in describe(name)
    assert "\n" not in describe(name)


def test_no_global_rng():
    import random

    random.seed(1)
    first = make_rows("AddSub", 20, seed=0)
    random.seed(2)
    assert make_rows("AddSub", 20, seed=0) == first


def test_prefix_override():
    rows = make_rows("Add", 5, seed=0, prefix="Q: ")
    assert all(r.clean.startswith("Q: ") and EXPR.match(r.clean[3:]) for r in rows)


def test_task_list_contains_all_prior_work_tasks():
    assert set(ARITH) | {"IOI", "GreaterThan"} <= set(task_names())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: make_rows("AddSb", 5, 0),
            r"unknown task 'AddSb' \(did you mean AddSub\?\); valid tasks: Add,",
        ),
        (lambda: make_rows("ioi", 5, 0), r"did you mean IOI"),
        (lambda: make_rows("Add", 0, 0), r"positive integer, got 0"),
        (lambda: make_rows("Add", -2, 0), r"positive integer, got -2"),
        (lambda: make_rows("Add", 2, None), r"the seed must be an integer, got None"),
        (
            lambda: make_rows("Add", 5, 0, foo=1),
            r"task Add: unknown parameter 'foo' \(valid parameters: lo, hi",
        ),
        (lambda: make_rows("Add", 5, 0, lo="x"), r"parameter 'lo' must be an integer, got 'x'"),
        (lambda: make_rows("Add", 5, 0, lo=50, hi=20), r"'hi' \(20\) must be >= 'lo' \(50\)"),
        (lambda: make_rows("Add", 5, 0, lo=-1), r"'lo' must be >= 0"),
        (lambda: make_rows("Sub", 5, 0, lo=5, hi=5), r"task Sub: no valid row .* lo=5, hi=5"),
        (lambda: make_rows("GreaterThan", 5, 0, end="late"), r"'end' must be one of random, next"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(DataError, match=match):
        call()


class CharTokenizer:
    """A fake tokenizer: one id per character, plus ``extra(text)`` more (to force length mismatches)."""

    bos_token_id, pad_token_id = 1, 0

    def __init__(self, extra=lambda text: 0):
        self.extra = extra

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) % 500 + 3 for ch in text] + [2] * self.extra(text)}


def test_make_pairs_tiny_tokenizer():
    from circuitft.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-gpt2")
    for name in ("AddSub", "IOI", "GreaterThan", "AddBase8"):
        pairs = make_pairs(name, tokenizer, 24, seed=0)
        assert len(pairs) == 24 and pairs.n_dropped == 0 and pairs.task == name
        assert pairs.rows == make_rows(name, 24, seed=0)
        assert (pairs.clean_ids != pairs.corrupted_ids).any(1).all(), "every pair differs in some token"
        assert (pairs.clean_ids[:, 0] == tokenizer.bos_token_id).all()
    assert (
        make_pairs("Add", tokenizer, 4, 0, prepend_bos=False).clean_ids[:, 0] != tokenizer.bos_token_id
    ).all()


def test_make_pairs_resamples_length_mismatches():
    # '7' costs two tokens: rows where b and c hold different numbers of 7s must be redrawn.
    tok = CharTokenizer(lambda text: text.count("7"))
    pairs = make_pairs("Add", tok, 50, seed=0)
    assert len(pairs) == 50 and pairs.n_dropped > 0
    assert all(r.clean.count("7") == r.corrupted.count("7") for r in pairs.rows)
    stream = [
        r
        for r in make_rows("Add", 50 + pairs.n_dropped, seed=0)
        if r.clean.count("7") == r.corrupted.count("7")
    ]
    assert pairs.rows == stream, "kept rows are the seeded stream minus the mismatches"
    again = make_pairs("Add", tok, 50, seed=0)
    assert again.rows == pairs.rows and again.n_dropped == pairs.n_dropped


def test_make_pairs_gives_up_with_one_line():
    # The last operand digit adds that many tokens: single-digit b != c never match.
    tok = CharTokenizer(lambda text: int(text[-2]) if text.endswith("=") else 0)
    with pytest.raises(DataError, match=r"task Add: 200 draws in a row for row 1 .* different token lengths"):
        make_pairs("Add", tok, 3, seed=0, lo=1, hi=9)


@pytest.mark.slow
def test_smollm2_tokenizer_needs_no_resampling(default_cache):
    from circuitft.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    for name in ("AddSub", "AddSubAlias", "CondAddSub", "IOI", "GreaterThan", "AddBase8"):
        pairs = make_pairs(name, tokenizer, 200, seed=0)
        assert len(pairs) == 200 and pairs.n_dropped == 0, name
    ioi = make_pairs("IOI", tokenizer, 50, seed=0)
    assert (ioi.answer_len == 1).all(), "IOI answers are one token"
