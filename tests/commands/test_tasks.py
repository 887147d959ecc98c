"""`circuitft tasks` in-process: list, show, make (byte-identical, atomic --out), check, one-line errors."""

from __future__ import annotations

import csv
import io

import pytest

from circuitft.cli import main
from circuitft.data.sources import load_rows
from circuitft.data.tasks import make_rows, task_names


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["tasks", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == task_names()
    assert all("e.g." in line for line in lines)


def test_show(capsys):
    code, out, _ = run(capsys, "show", "FloorDiv", "--n", "2", "--seed", "1")
    assert code == 0 and out.startswith("FloorDiv: ")
    rows = make_rows("FloorDiv", 2, seed=1)
    assert repr(rows[1].corrupted) in out and "parameters: lo:" in out


def test_show_reports_split_sizes(capsys):
    from circuitft.data.tasks import split_sizes

    sizes = split_sizes("Add", lo=0, hi=9)
    code, out, _ = run(capsys, "show", "Add", "--param", "lo=0", "hi=9", "--split", "val", "--n", "3")
    assert code == 0 and sum(sizes.values()) == 100  # all 10 x 10 operand pairs
    assert (
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']} distinct problems (of 100)" in out
    )
    assert "exact" in out
    code, out, _ = run(capsys, "show", "AddSub", "--param", "lo=0", "hi=9")
    assert code == 0 and "rows alternate between kinds: at most train" in out
    code, out, _ = run(capsys, "show", "Add", "--param", "hi=100000")
    assert code == 0 and "large (not enumerated)" in out


def test_make_split_too_large_is_one_line(capsys):
    code, _, err = run(capsys, "make", "Add", "--split", "test", "--n", "50", "--param", "lo=0", "hi=9")
    assert code == 2 and "task Add: asked for 50 test rows, but the test split holds" in err


def test_make_is_byte_identical_and_seeded(capsys):
    code, first, err = run(capsys, "make", "AddSub", "--n", "200", "--seed", "0")
    assert code == 0 and "0 rows resampled" in err
    assert run(capsys, "make", "AddSub", "--n", "200", "--seed", "0")[1] == first
    assert run(capsys, "make", "AddSub", "--n", "200", "--seed", "1")[1] != first
    records = list(csv.DictReader(io.StringIO(first)))
    assert len(records) == 200 and list(records[0]) == ["clean", "corrupted", "answer", "wrong"]
    expected = make_rows("AddSub", 200, seed=0)
    assert [(r["clean"], r["corrupted"], r["answer"], r["wrong"]) for r in records] == [
        (e.clean, e.corrupted, e.answer, e.wrong) for e in expected
    ]


def test_make_out_files_and_params(capsys, tmp_path):
    code, stdout, _ = run(capsys, "make", "IOI", "--n", "30", "--seed", "4")
    out_csv = tmp_path / "sub" / "ioi.csv"
    code, printed, err = run(capsys, "make", "IOI", "--n", "30", "--seed", "4", "--out", str(out_csv))
    assert code == 0 and printed == "" and "wrote 30 rows" in err
    assert out_csv.read_text(encoding="utf-8") == stdout
    assert [p.name for p in out_csv.parent.iterdir()] == ["ioi.csv"], "no temporary file left behind"
    out_jsonl = tmp_path / "digits.jsonl"
    argv = [
        "make",
        "AddBase8",
        "--n",
        "12",
        "--seed",
        "2",
        "--out",
        str(out_jsonl),
        "--param",
        "lo=1",
        "hi=7",
    ]
    assert run(capsys, *argv)[0] == 0
    assert load_rows(out_jsonl) == make_rows("AddBase8", 12, seed=2, lo=1, hi=7)


def test_make_with_model_validates_tokens(capsys):
    code, out, err = run(
        capsys, "make", "GreaterThan", "--n", "8", "--model", "tiny-gpt2", "--param", "end=next"
    )
    assert code == 0 and "0 rows resampled" in err and "tiny-gpt2" in err
    assert len(list(csv.DictReader(io.StringIO(out)))) == 8


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["make", "AddSb", "--n", "5"], "unknown task 'AddSb' (did you mean AddSub?)"),
        (["make", "AddSub", "--n", "0"], "--n must be a positive integer, got 0"),
        (["make", "AddSub", "--n", "-4"], "--n must be a positive integer, got -4"),
        (["make", "AddSub", "--n", "x"], "--n: expected an integer, got 'x'"),
        (["make", "AddSub"], "the following arguments are required: --n"),
        (["make", "AddSub", "--n", "3", "--param", "lo"], "--param 'lo': expected KEY=VALUE"),
        (["make", "AddSub", "--n", "3", "--param", "lo=x"], "parameter 'lo' must be an integer, got 'x'"),
        (["make", "AddSub", "--n", "3", "--param", "size=3"], "unknown parameter 'size'"),
        (["make", "AddSub", "--n", "3", "--param", "lo=9", "hi=1"], "'hi' (1) must be >= 'lo' (9)"),
        (["make", "AddSub", "--n", "3", "--model", "no-such-model"], "unknown model spec 'no-such-model'"),
        (["show", "Nope"], "unknown task 'Nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "missing ACTION: one of list, show, make, check"),
    ],
)
def test_errors_are_one_line_exit_2(capsys, argv, pattern):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and pattern in err


def test_failed_make_writes_nothing(capsys, tmp_path):
    for argv in (
        ["make", "AddSub", "--n", "0"],
        ["make", "AddSub", "--n", "3", "--param", "lo=x"],
        ["make", "Sub", "--n", "3", "--param", "lo=5", "hi=5"],
    ):
        assert run(capsys, *argv, "--out", str(tmp_path / "x.csv"))[0] == 2
    code, _, err = run(capsys, "make", "AddSub", "--n", "3", "--out", str(tmp_path / "x.txt"))
    assert code == 2 and "must end in .csv or .jsonl" in err
    assert list(tmp_path.iterdir()) == []


def test_check(capsys, tmp_path):
    good = tmp_path / "good.csv"
    assert run(capsys, "make", "IOI", "--n", "10", "--out", str(good))[0] == 0
    code, out, _ = run(capsys, "check", str(good), "--model", "tiny-gpt2")
    assert code == 0 and "10 rows OK for tiny-gpt2" in out
    lines = good.read_text(encoding="utf-8").splitlines()
    clean, corrupted, answer, wrong = next(csv.reader([lines[4]]))
    lines[4] = ",".join([clean, corrupted.replace(" gave", " then gave"), answer, wrong])
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "check", str(bad), "--model", "tiny-gpt2")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{bad}: row 4: clean and corrupted prompts tokenize to different lengths" in err
    code, _, err = run(capsys, "check", str(tmp_path / "none.csv"), "--model", "tiny-gpt2")
    assert code == 2 and "none.csv: file not found" in err


def test_help_exits_zero(capsys):
    assert main(["tasks", "--help"]) == 0
    assert "make" in capsys.readouterr().out
