"""``circuitft tasks check``: answers glued to the prompt, the model's accuracy on the rows, its warning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main(["tasks", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def stripped_copy(src: Path, dst: Path) -> Path:
    """``src`` with the leading space removed from every answer and wrong answer."""
    with src.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with dst.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "answer": r["answer"].lstrip(), "wrong": r["wrong"].lstrip()})
    return dst


def test_missing_leading_space_and_low_accuracy_are_reported(capsys, tmp_path: Path) -> None:
    good = tmp_path / "ioi.csv"
    assert main(["tasks", "make", "IOI", "--n", "8", "--out", str(good)]) == 0
    code, out, err = run(capsys, good, "--model", "tiny-gpt2")
    assert code == 0 and "8 rows OK for tiny-gpt2" in out and "glue" not in err and "running text" not in err
    assert "model accuracy: tiny-gpt2 answers 0 of 8 rows correctly (0%" in out  # a random model
    assert "warning: the model answers only 0% of the ioi rows correctly (< 20%)" in err
    bad = stripped_copy(good, tmp_path / "nospace.csv")
    code, out, err = run(capsys, bad, "--model", "tiny-gpt2")
    assert code == 0 and "8 rows load for tiny-gpt2" in out and "OK" not in out
    assert "warning: 8 of 8 rows have an answer whose tokens after the prompt differ from running text" in err
    first = next(csv.DictReader(bad.open(encoding="utf-8")))["answer"]
    assert (
        f"row 1: prompt end + answer {first!r}" in err
        and f"did you mean {' ' + first!r} (leading space)?" in err
    )
    assert "... and 11 more" in err  # 16 findings (answer and wrong of 8 rows), 5 shown
    code, out, err = run(capsys, bad, "--model", "tiny-gpt2", "--tokenizer_only")
    assert code == 0 and "model accuracy" not in out and "running text" in err and "< 20%" not in err


def test_bad_batch_size_is_one_line(capsys, tmp_path: Path) -> None:
    code, out, err = run(
        capsys, REPO / "demo" / "data" / "ioi.csv", "--model", "tiny-gpt2", "--batch_size", "0"
    )
    assert code == 2 and out == "" and err.strip() == "error: --batch_size must be positive, got 0"


@pytest.mark.slow
def test_the_reported_failure_capitals_without_leading_space(capsys, tmp_path: Path, default_cache) -> None:
    """The issue's case: answers without their leading space gave high faithfulness, model accuracy 0 and
    "16 rows OK"; now both commands say what is wrong."""
    bad = stripped_copy(REPO / "demo" / "data" / "capitals.csv", tmp_path / "capitals.csv")
    code, out, err = run(capsys, bad, "--model", "smollm2-135m")
    assert code == 0 and "20 rows load" in out and "20 of 20 rows have an answer" in err
    assert "row 1: answer 'Paris' follows the prompt without a space" in err
    assert "did you mean ' Paris' (leading space)?" in err
    assert (
        "answers 0 of 20 rows correctly" in out
        and "row 1: answer 'Paris' starts with token 'Paris'; the model predicts ' Paris'" in out
    )
    assert "warning: the model answers only 0% of the capitals rows" in err
    circuit_out = tmp_path / "c"
    argv = ["circuit", "--quiet", "--model", "smollm2-135m", "--data", str(bad), "--method", "EAP",
            "--limit", "8", "--size_curve", "false", "--baseline_samples", "1", "--out", str(circuit_out)]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((circuit_out / "metrics.json").read_text())
    assert m["model_accuracy"] == 0.0 and "does not do this task" in m["warnings"][0]
    assert f"circuitft tasks check {bad} --model smollm2-135m" in capsys.readouterr().err
    code, out, err = run(capsys, REPO / "demo" / "data" / "capitals.csv", "--model", "smollm2-135m")
    assert "20 rows OK" in out and "running text" not in err and "< 20%" not in err


def test_misses_show_every_expected_and_predicted_token(capsys) -> None:
    """The issue's case: "answer '15' starts with token '1'; the model predicts '1'" hid the token that differs."""
    import ast
    import re

    code, out, _ = run(capsys, REPO / "demo" / "data" / "addsub_val.csv", "--model", "tiny-gpt2")
    misses = [ln for ln in out.splitlines() if ln.startswith("  row ")]
    assert code == 0 and len(misses) == 5
    for line in misses:
        answer = re.search(r"answer '([^']*)'", line).group(1)
        tokens = re.search(r"expected tokens (\[.*?\]), predicted (\[.*?\])", line)
        expected, predicted = ast.literal_eval(tokens.group(1)), ast.literal_eval(tokens.group(2))
        assert "".join(expected) == answer and len(predicted) == len(expected)


def test_a_miss_on_a_later_token_names_it() -> None:
    from circuitft.commands.tasks_check import miss_text

    class Digits:  # token id i decodes to str(i)
        def decode(self, ids: list[int]) -> str:
            return "".join(str(i) for i in ids)

    assert miss_text(Digits(), "15", [1, 5], [1, 2]) == (
        "answer '15': expected tokens ['1', '5'], predicted ['1', '2'] (token 2 differs: '5' expected, '2' predicted)"
    )
    assert miss_text(Digits(), "15", [1, 5], [3, 5]).startswith(
        "answer '15' starts with token '1'; the model predicts '3' (expected tokens ['1', '5'], predicted ['3', '5'])"
    )
