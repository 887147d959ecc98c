"""FinetuneCircuits' tasks: every rule recomputed from the parsed prompts, corruptions, seeds, tokenizers."""

from __future__ import annotations

import math
import re

import pytest

from circuitft.data.generators.finetune_circuits import space_size
from circuitft.data.tasks import describe, get_task, make_pairs, make_rows
from circuitft.errors import DataError

PREFIX = "Calculate the result of the following arithmetic expression and provide only the final answer: "
LCM_TEXT = "Calculate the least common multiple (LCM) of two numbers. "
FC = ["FCAddSub", "FCMulDiv", "FCSequence", "FCFunction", "FCLCM", "FCCompositional"]
N = 300


def _digits(numbers) -> list[int]:
    return [len(str(x)) for x in numbers]


def _parse(pattern: str, text: str, prefix: str = "") -> tuple[int | str, ...]:
    assert text.startswith(prefix), text
    m = re.fullmatch(pattern, text[len(prefix) :])
    assert m, text
    return tuple(int(g) if g.isdigit() else g for g in m.groups())


def test_addsub_rule_and_operator_flip():
    rows = make_rows("FCAddSub", N, seed=1)
    pat = r"(\d+) ([+-]) (\d+) ="
    for i, row in enumerate(rows):
        a, op, b = _parse(pat, row.clean, PREFIX)
        a2, op2, b2 = _parse(pat, row.corrupted, PREFIX)
        assert op == "+-"[i % 2], "operators alternate row by row"
        assert 1 <= b <= a <= 100
        assert (a2, b2) == (a, b) and op2 != op, "the corruption flips only the operator"
        assert row.answer == str(a + b if op == "+" else a - b)
        assert row.wrong == str(a + b if op2 == "+" else a - b)
    assert len({r.clean for r in rows}) > 250


def test_muldiv_rule_and_corruption():
    rows = make_rows("FCMulDiv", N, seed=2)
    pat = r"(\d+) ([*/]) (\d+) ="
    for i, row in enumerate(rows):
        a, op, b = _parse(pat, row.clean, PREFIX)
        c, op2, b2 = _parse(pat, row.corrupted, PREFIX)
        assert op == op2 == "*/"[i % 2] and b2 == b and c != a
        assert _digits([c]) == _digits([a]), "the changed operand keeps its digit count"
        if op == "*":
            assert 2 <= a <= 200 and 2 <= b <= 180 and 2 <= c <= 200
            assert row.answer == str(a * b) and row.wrong == str(c * b) and a * b <= 999
        else:
            assert 2 <= b <= 200 and a % b == 0 and c % b == 0, "exact division, another multiple of b"
            assert 2 <= a // b <= 200 and a <= 999 and c <= 999
            assert row.answer == str(a // b) and row.wrong == str(c // b)
        assert row.answer != row.wrong


def test_sequence_rule_and_corruption():
    rows = make_rows("FCSequence", N, seed=3)
    pat = r"Derive the following sequence: (\d+), (\d+), (\d+), (\d+),"
    kinds = set()
    for row in rows:
        s = _parse(pat, row.clean)
        t = _parse(pat, row.corrupted)
        if s[1] - s[0] == s[2] - s[1] == s[3] - s[2]:
            d = s[1] - s[0]
            assert 1 <= s[0] <= 500 and 1 <= d <= 100
            assert row.answer == str(s[3] + d)
            kinds.add("arithmetic")
        else:
            r = s[1] // s[0]
            assert 1 <= s[0] <= 10 and 2 <= r <= 10 and s[1:] == (s[0] * r, s[0] * r**2, s[0] * r**3)
            assert row.answer == str(s[3] * r)
            kinds.add("geometric")
        changed = [k for k in range(4) if s[k] != t[k]]
        assert len(changed) == 1 and changed[0] in (2, 3), "one of the last two terms changes"
        k = changed[0]
        assert 1 <= t[k] - s[k] <= 100 and t[k] not in s and t[k] <= 999
        assert _digits(t) == _digits(s)
        assert int(row.answer) <= 999 and row.wrong is None
    assert "arithmetic" in kinds


def test_sequence_space_and_geometric_share():
    # Arithmetic: start 1..500, step 1..100 (s5 <= 900): 50,000, less 6,7,8,9 and 96,97,98,99, where
    # neither s3 nor s4 can grow without hitting s4 or another digit count. Geometric with
    # s5 = s * r**4 <= 999: r=2: s 1..10, r=3: s 1..10, r=4: s 1..3, r=5: s 1 -> 24.
    # Uniform over problems (as the original's de-duplicated data), so geometric rows are rare.
    assert space_size("FCSequence") == 50_000 - 2 + 24
    geometric = [
        r
        for r in make_rows("FCSequence", 3000, seed=5)
        if (t := _parse(r"[^\d]*(\d+), (\d+), (\d+).*", r.clean))[1] - t[0] != t[2] - t[1]
    ]
    assert len(geometric) < 10
    small = make_rows("FCSequence", 50, seed=0, max_value=16)
    assert all(int(r.answer) <= 16 for r in small) and len({r.clean for r in small}) > 5


def test_function_rule_and_corruption():
    rows = make_rows("FCFunction", N, seed=4)
    pat = r"There is a function y=(\d+)x\+(\d+)\. Given x=1,2,3,4, y=(\d+),(\d+),(\d+),"
    for row in rows:
        a, b, *ys = _parse(pat, row.clean)
        a2, b2, *ys2 = _parse(pat, row.corrupted)
        assert 1 <= a <= 20 and 1 <= b <= 500 and ys == [a * x + b for x in (1, 2, 3)]
        assert a2 == a and b2 != b and 1 <= b2 <= 500, "same slope, another intercept"
        assert ys2 == [a * x + b2 for x in (1, 2, 3)]
        assert _digits([b2, *ys2]) == _digits([b, *ys])
        assert row.answer == str(4 * a + b) and row.wrong == str(4 * a + b2)
        assert 4 * a + b <= 999 and 4 * a + b2 <= 999


def _lcm_type(m: int, n: int) -> set[str]:
    """Every type of the original generator that can produce the pair (m, n)."""
    kinds = set()
    if n % m == 0 and 1 <= m <= 50 and 2 <= n // m <= 10:
        kinds.add("multiple")
    if math.gcd(m, n) == 1:
        kinds.add("coprime")
    for base in range(2, 51):
        if m % base == 0 and n % base == 0 and m != n and 2 <= m // base <= 10 and 2 <= n // base <= 10:
            kinds.add("common factor")
    return kinds


def test_lcm_rule_and_corruption():
    rows = make_rows("FCLCM", N, seed=5)
    pat = re.escape(LCM_TEXT) + r"LCM\((\d+), (\d+)\) = (\d+), LCM\((\d+), (\d+)\) ="
    types = ["multiple", "coprime", "common factor"]
    examples = {}
    for i, row in enumerate(rows):
        e1, e2, le, m, n = _parse(pat, row.clean)
        f1, f2, lf, m2, n2 = _parse(pat, row.corrupted)
        kind = types[i % 3]
        assert le == math.lcm(e1, e2) and (f1, f2, lf) == (e1, e2, le), "the solved example is kept"
        assert (e1, e2) != (m, n), "the example is another pair"
        for pair in ((e1, e2), (m, n), (m2, n2)):  # of this type, and of no type listed before it
            assert kind in _lcm_type(*pair) and not set(types[: i % 3]) & _lcm_type(*pair)
        assert (m2, n2) != (m, n) and _digits([m2, n2]) == _digits([m, n])
        assert row.answer == str(math.lcm(m, n)) and row.wrong == str(math.lcm(m2, n2))
        assert row.answer != row.wrong and int(row.answer) <= 999 and int(row.wrong) <= 999
        assert examples.setdefault((m, n), (e1, e2)) == (e1, e2), "one question, one example"


def test_compositional_rule_and_corruption():
    rows = make_rows("FCCompositional", N, seed=6)
    pat = r"\((\d+) ([+-]) (\d+)\) ([*/]) (\d+) ="
    brackets = set()
    for i, row in enumerate(rows):
        x, op2, y, op, z = _parse(pat, row.clean, PREFIX)
        cx, cop2, cy, cop, cz = _parse(pat, row.corrupted, PREFIX)
        assert op == "*/"[i % 2] and (cx, cop2, cy, cop) == (x, op2, y, op) and cz != z, "only z changes"
        assert 2 <= x <= 100 and 1 <= y <= 100 and (op2 == "+" or y <= x)
        v = x + y if op2 == "+" else x - y
        brackets.add(op2)
        if op == "*":
            assert 2 <= z <= 100 and 2 <= cz <= 100
            assert row.answer == str(v * z) and row.wrong == str(v * cz)
        else:
            assert v % z == 0 and v % cz == 0 and z >= 2 and cz >= 2, "z and the new z divide the bracket"
            assert row.answer == str(v // z) and row.wrong == str(v // cz)
        assert _digits([cz]) == _digits([z]) and row.answer != row.wrong and int(row.answer) <= 999
    assert brackets == {"+", "-"}


@pytest.mark.parametrize("name", FC)
def test_seeded_and_described(name):
    assert make_rows(name, 30, seed=7) == make_rows(name, 30, seed=7)
    assert make_rows(name, 30, seed=7) != make_rows(name, 30, seed=8)
    assert make_rows(name, 10, seed=7) == make_rows(name, 30, seed=7)[:10]
    assert "FinetuneCircuits" in describe(name) and "\n" not in describe(name)


def test_prefix_and_max_value_parameters():
    rows = make_rows("FCAddSub", 20, seed=0, prefix="Q: ", lo=1, hi="9")
    assert all(re.fullmatch(r"Q: [1-9] [+-] [1-9] =", r.clean) for r in rows)
    wide = make_rows("FCAddSub", 20, seed=0, lo=1000, hi=2000)  # 1M candidates: drawn by rejection
    assert space_size("FCAddSub", {"lo": 1000, "hi": 2000}) is None
    for row in wide:
        a, op, b = _parse(r"(\d+) ([+-]) (\d+) =", row.clean, PREFIX)
        assert 1000 <= b <= a <= 2000 and row.answer == str(a + b if op == "+" else a - b)
    rows = make_rows("FCFunction", 50, seed=0, max_value=99)
    assert all(int(r.answer) <= 99 and int(r.wrong) <= 99 for r in rows)
    assert get_task("FCSequence").resolve({})["prefix"] == ""
    assert get_task("FCMulDiv").resolve({})["prefix"] == PREFIX


def test_space_sizes_counted_by_hand():
    # 1 <= b <= a <= n: n(n+1)/2 pairs per operator; b >= 1, so flipping the operator always changes the answer.
    assert space_size("FCAddSub") == 2 * 5050
    assert space_size("FCAddSub", {"lo": 1, "hi": 9}) == 2 * 45
    # Function: 4a + b <= 999 always; usable when another intercept of b's digit count keeps y1..y3 at
    # their digit counts (counted by brute force here, independently of the generator's code).
    usable = 0
    for a in range(1, 21):
        for b in range(1, 501):
            ys = _digits(a * x + b for x in (1, 2, 3))
            usable += any(
                c != b and _digits([c]) == _digits([b]) and _digits(a * x + c for x in (1, 2, 3)) == ys
                for c in range(1, 501)
            )
    assert space_size("FCFunction") == usable and 9_900 < usable < 10_000
    # MulDiv: a*b <= 999 with a 2..200, b 2..180, and (a/b) exact with quotient 2..200 and dividend <= 999.
    mul = sum(1 for a in range(2, 201) for b in range(2, 181) if a * b <= 999)
    div = sum(1 for b in range(2, 201) for q in range(2, 201) if b * q <= 999)
    assert space_size("FCMulDiv") <= mul + div and space_size("FCMulDiv") > 0.95 * (mul + div)


def test_compositional_listing_equals_the_generic_corruption_check():
    # FCCompositional lists its 382,619 problems without rendering them; the generic check (render both
    # prompts, compare digit counts and answers) must agree on every candidate of the original ranges.
    import random

    from circuitft.data.generators import finetune_circuits as fc
    from circuitft.data.generators.problems import listed, problem_key, usable

    p = get_task("FCCompositional").resolve({})
    problems = listed(fc._COMPOSITIONAL, problem_key(p))
    assert space_size("FCCompositional") == sum(map(len, problems)) == 382_619
    members = [set(c) for c in problems]
    rng = random.Random(0)
    for _ in range(20_000):
        cls = rng.randrange(2)
        t = (rng.choice("+-"), rng.randint(2, 100), rng.randint(1, 100), "*/"[cls], rng.randint(2, 100))
        generic = fc._COMPOSITIONAL.valid(t, p) and usable(fc._COMPOSITIONAL, t, p)
        assert (t in members[cls]) == generic, t


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("FCMulDiv", {"max_value": 0}, r"task FCMulDiv: parameter 'max_value' must be >= 1, got 0"),
        ("FCFunction", {"max_value": 4}, r"task FCFunction: no usable problem with max_value=4 \(widen"),
        ("FCCompositional", {"max_value": 1}, r"task FCCompositional: no usable problem with max_value=1 \("),
        ("FCAddSub", {"lo": 5, "hi": 2}, r"'hi' \(2\) must be >= 'lo' \(5\)"),
        ("FCAddSub", {"lo": 0, "hi": 0}, r"task FCAddSub: no usable problem with hi=0, lo=0"),
        ("FCLCM", {"foo": 1}, r"task FCLCM: unknown parameter 'foo' \(valid parameters: prefix, max_value\)"),
    ],
)
def test_bad_parameters_one_line(name, params, match):
    with pytest.raises(DataError, match=match):
        make_rows(name, 3, seed=0, **params)


@pytest.mark.parametrize("name", FC)
def test_tiny_tokenizer_needs_no_resampling(name):
    from circuitft.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-gpt2")
    pairs = make_pairs(name, tokenizer, 60, seed=0)
    assert len(pairs) == 60 and pairs.n_dropped == 0
    assert pairs.rows == make_rows(name, 60, seed=0)
    assert (pairs.clean_ids != pairs.corrupted_ids).any(1).all(), "every pair differs in some token"


@pytest.mark.slow
def test_smollm2_tokenizer_needs_no_resampling(default_cache):
    from circuitft.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    for name in FC:
        pairs = make_pairs(name, tokenizer, 300, seed=0)
        assert len(pairs) == 300 and pairs.n_dropped == 0, name
        assert (pairs.clean_ids != pairs.corrupted_ids).any(1).all(), name


@pytest.mark.parametrize("name", FC)
def test_splits_share_no_prompt_and_draws_come_from_the_listed_space(name):
    from circuitft.data.splits import split_of
    from circuitft.data.tasks import split_sizes

    by_split = {s: make_rows(name, 40, seed=3, split=s) for s in ("train", "val", "test")}
    prompts = {s: {r.clean for r in rows} for s, rows in by_split.items()}
    assert not prompts["train"] & prompts["val"] and not prompts["train"] & prompts["test"]
    assert not prompts["val"] & prompts["test"]
    assert all(split_of(p) == s for s, ps in prompts.items() for p in ps)
    assert len(prompts["val"]) == 40, "val rows are distinct problems"
    spec = get_task(name)
    space = spec.problem_space(spec.resolve({}))
    assert sum(len(c) for c in space) == space_size(name) == sum(split_sizes(name).values())
    members = [set(c) for c in space]
    for i, row in enumerate(make_rows(name, 60, seed=1)):
        assert row.clean in members[i % len(space)], "a row's problem is in its slot class's list"


def test_small_split_is_exhausted_with_one_line():
    from circuitft.data.tasks import split_sizes

    sizes = split_sizes("FCAddSub", lo=1, hi=9)
    assert sum(sizes.values()) == 90 and 0 < sizes["val"] < 20
    rows = make_rows("FCAddSub", 2 * sizes["val"] + 40, seed=0, split="train", lo=1, hi=9)
    assert len(rows) == 2 * sizes["val"] + 40, "train samples with replacement past its size"
    with pytest.raises(
        DataError, match=rf"task FCAddSub: asked for 50 val rows, but the val split holds {sizes['val']}"
    ):
        make_rows("FCAddSub", 50, seed=0, split="val", lo=1, hi=9)
