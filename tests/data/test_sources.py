"""User data sources: CSV/TSV/JSONL/datasets round trips and one-line errors naming file, row, column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitft.commands.tasks import to_csv, to_jsonl
from circuitft.data.rows import PromptRow
from circuitft.data.sources import load_pairs, load_rows
from circuitft.data.tasks import make_rows
from circuitft.errors import DataError

ROWS = [
    PromptRow("When Mary and John went to the store, John gave a drink to", "When Anna and Tom went to the store, Bob gave a drink to", " Mary", " John"),  # noqa: E501
    PromptRow('Say "hi", then 5◇7=', 'Say "hi", then 5◇8=', "12", None),
    PromptRow("a,b\nc", "a,b\nd", "x", "y"),
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    from circuitft.models import load_tokenizer

    return load_tokenizer("tiny-gpt2")


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_jsonl_round_trip(tmp_path):
    rows = ROWS + make_rows("AddSubAlias", 20, seed=0) + make_rows("IOI", 5, seed=0)
    assert load_rows(_write(tmp_path / "d.csv", to_csv(rows))) == rows
    assert load_rows(str(_write(tmp_path / "d.jsonl", to_jsonl(rows)))) == rows
    assert load_rows(tmp_path / "d.csv", limit=4) == rows[:4]
    assert load_rows(tmp_path / "d.jsonl", limit=2) == rows[:2]


def test_csv_extra_columns_bom_blank_lines_and_optional_wrong(tmp_path):
    text = "\ufeffid,answer,corrupted,clean,note\n1,3,1+3=,1+2=,x\n\n2,5,2+4=,2+3=,y\n"
    assert load_rows(_write(tmp_path / "e.csv", text)) == [
        PromptRow("1+2=", "1+3=", "3"),
        PromptRow("2+3=", "2+4=", "5"),
    ]
    tsv = "clean\tcorrupted\tanswer\twrong\n1+2=\t1+3=\t3\t\n"
    assert load_rows(_write(tmp_path / "e.tsv", tsv)) == [PromptRow("1+2=", "1+3=", "3", None)]


def test_jsonl_numbers_as_answers(tmp_path):
    text = '{"clean": "1+2=", "corrupted": "1+3=", "answer": 3, "wrong": 4, "meta": {"k": 1}}\n\n'
    assert load_rows(_write(tmp_path / "n.jsonl", text)) == [PromptRow("1+2=", "1+3=", "3", "4")]


def test_datasets_sources(tmp_path):
    import datasets

    rows = make_rows("AddSub", 12, seed=1)
    records = [r.to_dict() | {"extra": i} for i, r in enumerate(rows)]
    ds = datasets.Dataset.from_list(records)
    ds.save_to_disk(str(tmp_path / "flat"))
    assert load_rows(tmp_path / "flat") == rows
    assert load_rows(tmp_path / "flat", limit=5) == rows[:5]
    dd = datasets.DatasetDict({"train": ds.select(range(8)), "validation": ds.select(range(8, 12))})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert load_rows(tmp_path / "dict") == rows[:8]
    assert load_rows(tmp_path / "dict", split="validation") == rows[8:]
    with pytest.raises(DataError, match=r"dict: no split 'test' \(splits: train, validation\)"):
        load_rows(tmp_path / "dict", split="test")
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert load_rows(tmp_path / "d.parquet") == rows
    _write(tmp_path / "arr.json", json.dumps([r.to_dict() for r in rows]))
    assert load_rows(tmp_path / "arr.json") == rows
    bad = datasets.Dataset.from_list([{"clean": "1+2=", "corrupted": "1+3=", "answer": ""}])
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"bad: row 1: column 'answer' is empty"):
        load_rows(tmp_path / "bad")
    nocol = datasets.Dataset.from_list([{"clean": "1+2=", "answer": "3"}])
    nocol.save_to_disk(str(tmp_path / "nocol"))
    with pytest.raises(DataError, match=r"nocol: missing column 'corrupted'"):
        load_rows(tmp_path / "nocol")


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("missing.csv", None, r"missing\.csv: file not found"),
        ("empty.csv", "", r"empty\.csv: empty file"),
        ("blank.jsonl", "\n  \n", r"blank\.jsonl: empty file"),
        ("header.csv", "clean,corrupted,answer\n", r"header\.csv: no data rows"),
        ("nocol.csv", "clean,corrupted,wrong\na,b,c\n", r"nocol\.csv: missing column 'answer' \(columns found: 'clean', 'corrupted', 'wrong'\)"),  # noqa: E501
        ("cell.csv", "clean,corrupted,answer\na,b,c\nd,e,\n", r"cell\.csv: row 2 \(line 3\): column 'answer' is empty"),  # noqa: E501
        ("short.csv", "clean,corrupted,answer\na,b,c\nd,e\n", r"short\.csv: row 2 \(line 3\): column 'answer' is empty"),  # noqa: E501
        ("space.csv", "clean,corrupted,answer\n  ,b,c\n", r"space\.csv: row 1 \(line 2\): column 'clean' is empty"),  # noqa: E501
        ("bad.jsonl", '{"clean": "a", "corrupted": "b", "answer": "c"}\n\n{"clean": "a",\n', r"bad\.jsonl: line 3: malformed JSON"),  # noqa: E501
        ("key.jsonl", '{"clean": "a", "answer": "c"}\n', r"key\.jsonl: line 1: missing column 'corrupted'"),
        ("list.jsonl", '["a", "b", "c"]\n', r"list\.jsonl: line 1: expected a JSON object"),
        ("type.jsonl", '{"clean": 1, "corrupted": "b", "answer": "c"}\n', r"type\.jsonl: line 1: column 'clean' must be text"),  # noqa: E501
        ("nul.jsonl", '{"clean": "a", "corrupted": "b", "answer": null}\n', r"nul\.jsonl: line 1: column 'answer' is empty"),  # noqa: E501
        ("latin.csv", "clean,corrupted,answer\nna\u00efve,b,c\n".encode("latin-1"), r"latin\.csv: line 2 is not UTF-8 text \(byte 0xef\)"),  # noqa: E501
        ("data.txt", "x", r"data\.txt: unsupported file type '\.txt'"),
    ],
)  # fmt: skip
def test_bad_inputs_name_file_row_and_column(tmp_path, name, content, pattern):
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    with pytest.raises(DataError, match=pattern) as err:
        load_rows(path)
    assert str(tmp_path) in _one_line(err)


def test_bad_split_limit_and_hub_offline(tmp_path):
    path = _write(tmp_path / "ok.csv", to_csv(ROWS))
    with pytest.raises(DataError, match=r"ok\.csv: split 'validation' given, but a \.csv file has no splits"):
        load_rows(path, split="validation")
    with pytest.raises(DataError, match=r"limit must be a positive integer, got 0"):
        load_rows(path, limit=0)
    with pytest.raises(
        DataError, match=r"hub dataset 'nobody/no-such-dataset' is not available offline"
    ) as err:
        load_rows("hf:nobody/no-such-dataset")
    _one_line(err)
    with pytest.raises(DataError, match="not a dataset folder"):
        load_rows(tmp_path)


def test_load_pairs(tmp_path, tokenizer):
    rows = make_rows("IOI", 6, seed=0)
    path = _write(tmp_path / "ioi.csv", to_csv(rows))
    pairs = load_pairs(path, tokenizer)
    assert pairs.task == "ioi" and pairs.rows == rows and pairs.n_dropped == 0
    assert load_pairs(path, tokenizer, task="mine").task == "mine"
    # Row 3's corrupted prompt gets one word more: a token-length mismatch.
    bad = rows[:2] + [PromptRow(rows[2].clean, rows[2].corrupted + " then", rows[2].answer)] + rows[3:]
    bad_path = _write(tmp_path / "bad.jsonl", to_jsonl(bad))
    with pytest.raises(
        DataError, match=r"bad\.jsonl: row 3: clean and corrupted prompts tokenize to different"
    ):
        load_pairs(bad_path, tokenizer)
    dropped = load_pairs(bad_path, tokenizer, on_mismatch="drop")
    assert len(dropped) == 5 and dropped.n_dropped == 1 and bad[2] not in dropped.rows


def test_split_column_in_jsonl_and_bad_value_names_the_line(tmp_path):
    from circuitft.data.sources import load_split_rows

    lines = [
        '{"clean": "1+1=", "corrupted": "1+2=", "answer": "2", "split": "test"}',
        '{"clean": "1+3=", "corrupted": "1+4=", "answer": "4", "split": ""}',
        '{"clean": "1+1=", "corrupted": "1+5=", "answer": "2", "split": "train"}',
    ]
    f = _write(tmp_path / "s.jsonl", "\n".join(lines) + "\n")
    rows, dropped = load_split_rows(f)
    assert [r.corrupted for r in rows["train"]] == ["1+5="]  # the train copy is kept, the test copy dropped
    assert dropped == {"train": 0, "val": 0, "test": 1} and rows["test"] == []
    from circuitft.data.splits import split_of

    assert any(r.clean == "1+3=" for r in rows[split_of("1+3=")])  # empty cell: by hash
    bad = _write(tmp_path / "b.jsonl", lines[0].replace('"test"', '"dev"') + "\n")
    with pytest.raises(DataError, match=r"b.jsonl: line 1: column 'split' must be one of train, val, test"):
        load_split_rows(bad)
