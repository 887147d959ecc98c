"""User task data: CSV/TSV, JSON Lines, and Hugging Face ``datasets`` (saved folders, local files, hub).

Every source holds the columns ``clean``, ``corrupted`` and ``answer`` (optional ``wrong``; any other
column is ignored). Problems raise a one-line :class:`DataError` naming the file, the row (``row N`` counts
data rows from 1, header excluded; JSON Lines name the line) and the column.

An optional ``split`` column (``train``, ``val`` or ``test``; an empty cell: by hash) assigns rows to
splits (:func:`load_split_rows`); without it every row's split is the hash of its clean prompt, as for the
built-in tasks (:mod:`circuitft.data.splits`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.data.splits import SPLITS, split_of
from circuitft.errors import DataError
from circuitft.limits import check_regular_file

if TYPE_CHECKING:  # not at run time: `circuitft fit --help` must not import transformers
    from transformers import PreTrainedTokenizerBase

REQUIRED = ("clean", "corrupted", "answer")
OPTIONAL = ("wrong",)
SPLIT_COLUMN = "split"
_DATASETS_BUILDERS = {".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
HUB_PREFIX = "hf:"


def load_rows(
    source: str | Path, split: str | None = None, limit: int | None = None, labels: list | None = None
) -> list[PromptRow]:
    """Rows of ``source``: a ``.csv``/``.tsv`` file, a ``.jsonl`` file, a folder written by
    ``datasets.Dataset(Dict).save_to_disk``, a local ``.json``/``.parquet``/``.arrow`` file, or
    ``hf:NAME`` (a hub dataset). ``split`` picks a split of a dataset dict / hub dataset (default
    ``train``, or the only split); ``limit`` keeps the first rows. ``labels``, when given, receives each
    row's ``split`` column (validated; None where the source has no such column or the cell is empty).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise DataError(f"{source}: limit must be a positive integer, got {limit!r}")
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        return _from_dataset(_load_hub(source[len(HUB_PREFIX) :], split), source, limit, labels)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        return _from_dataset(_load_disk(path, split), str(path), limit, labels)
    check_regular_file(path, str(path))  # a FIFO or a device would block or never end
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        if split not in (None, "train"):
            raise DataError(f"{path}: split {split!r} given, but a {suffix} file has no splits")
        text = _read_text(path)
        rows = (
            _from_jsonl(text, path, labels)
            if suffix == ".jsonl"
            else _from_csv(text, path, suffix == ".tsv", labels)
        )
        if limit and labels is not None:
            del labels[limit:]
        return rows[:limit] if limit else rows
    if suffix in _DATASETS_BUILDERS:
        return _from_dataset(_load_file(path, _DATASETS_BUILDERS[suffix], split), str(path), limit, labels)
    raise DataError(
        f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl, .json, .parquet, "
        ".arrow, a save_to_disk folder or hf:NAME"
    )


def load_pairs(
    source: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    task: str | None = None,
    prepend_bos: bool | None = None,
    on_mismatch: Literal["error", "drop"] = "error",
) -> PromptPairs:
    """:func:`load_rows` tokenized into :class:`PromptPairs` (task name: the file's stem by default).

    With ``on_mismatch="error"`` the first row whose clean and corrupted prompts tokenize to different
    lengths raises a :class:`DataError` naming the file and row; with ``"drop"`` such rows are counted in
    ``n_dropped``.
    """
    if on_mismatch not in ("error", "drop"):
        raise DataError(f"on_mismatch must be 'error' or 'drop', got {on_mismatch!r}")
    rows = load_rows(source)
    if task is None:
        task = task_name(source)
    return tokenize_pairs(rows, tokenizer, task, prepend_bos, on_mismatch, source=str(source))


def task_name(source: str | Path) -> str:
    """The default task name of a data source: the file's stem, or the hub name after ``hf:``."""
    s = str(source)
    return s[len(HUB_PREFIX) :] if s.startswith(HUB_PREFIX) else Path(s).stem


def load_split_rows(source: str | Path) -> tuple[dict[str, list[PromptRow]], dict[str, int]]:
    """Rows of ``source`` by split (``split`` column, else hash of the clean prompt), in file order, and
    the number of rows dropped from each split because their clean prompt is already in an earlier split
    (train before val before test)."""
    labels: list[str | None] = []
    rows = load_rows(source, labels=labels)
    out: dict[str, list[PromptRow]] = {s: [] for s in SPLITS}
    for row, label in zip(rows, labels, strict=True):
        out[label or split_of(row.clean)].append(row)
    dropped = dict.fromkeys(SPLITS, 0)
    earlier: set[str] = set()
    for name in SPLITS:
        kept = [r for r in out[name] if r.clean not in earlier]
        dropped[name] = len(out[name]) - len(kept)
        out[name] = kept
        earlier |= {r.clean for r in kept}
    return out, dropped


def _split_label(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.strip() not in SPLITS:
        raise DataError(f"{where}: column 'split' must be one of {', '.join(SPLITS)} or empty, got {value!r}")
    return value.strip()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: empty file (expected columns {', '.join(REQUIRED)})")
    return text


def _row(values: Mapping[str, Any], where: str) -> PromptRow:
    """One validated row; ``where`` is like ``"data.csv: row 3"``."""
    fields: dict[str, str | None] = {}
    for col in REQUIRED + OPTIONAL:
        value = values.get(col)
        if isinstance(value, bool) or (value is not None and not isinstance(value, (str, int, float))):
            raise DataError(f"{where}: column {col!r} must be text, got {type(value).__name__}")
        if col in ("answer", "wrong") and isinstance(value, (int, float)):
            value = str(value)
        elif col in ("clean", "corrupted") and value is not None and not isinstance(value, str):
            raise DataError(f"{where}: column {col!r} must be text, got {type(value).__name__}")
        if value is None or not value.strip():
            if col in OPTIONAL:
                value = None
            else:
                raise DataError(f"{where}: column {col!r} is empty")
        fields[col] = value
    return PromptRow(**fields)  # type: ignore[arg-type]


def _check_columns(columns: Iterable[str], where: str) -> None:
    columns = list(columns)
    for col in REQUIRED:
        if col not in columns:
            have = ", ".join(repr(c) for c in columns) or "none"
            raise DataError(f"{where}: missing column {col!r} (columns found: {have})")


def _from_csv(text: str, path: Path, tsv: bool, labels: list | None = None) -> list[PromptRow]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",")
    try:
        header = [h.strip() for h in next(reader)]
        _check_columns(header, str(path))
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            raise DataError(
                f"{path}: line {reader.line_num}: column {twice[0]!r} appears more than once in the header"
            )
        index = {col: header.index(col) for col in REQUIRED + OPTIONAL if col in header}
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            values = {col: cells[i] if i < len(cells) else None for col, i in index.items()}
            where = f"{path}: row {len(rows) + 1} (line {reader.line_num})"
            rows.append(_row(values, where))
            if labels is not None:
                i = header.index(SPLIT_COLUMN) if SPLIT_COLUMN in header else len(cells)
                labels.append(_split_label(cells[i] if i < len(cells) else None, where))
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({err})") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return rows


def _from_jsonl(text: str, path: Path, labels: list | None = None) -> list[PromptRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise DataError(f"{where}: JSON nested too deeply to be a row") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object with keys {', '.join(REQUIRED)}")
        for col in REQUIRED:
            if col not in obj:
                raise DataError(f"{where}: missing column {col!r}")
        rows.append(_row(obj, where))
        if labels is not None:
            labels.append(_split_label(obj.get(SPLIT_COLUMN), where))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _datasets() -> Any:
    """The ``datasets`` library, imported on first use: 2 s that `circuitft fit --help` (which imports this
    module) and every run from task generators or CSV/JSONL files never pay."""
    import datasets

    return datasets


def _pick_split(data: Any, split: str | None, where: str) -> Any:
    datasets = _datasets()
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if split is None:
            split = "train" if "train" in names or len(names) != 1 else names[0]
        if split not in names:
            raise DataError(f"{where}: no split {split!r} (splits: {', '.join(names)})")
        return data[split]
    if split not in (None, "train"):
        raise DataError(f"{where}: split {split!r} given, but the dataset has no splits")
    return data


def _load_disk(path: Path, split: str | None) -> Any:
    datasets = _datasets()
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise DataError(
            f"{path}: not a dataset folder written by save_to_disk ({_first_line(err)})"
        ) from None
    return _pick_split(data, split, str(path))


def _load_file(path: Path, builder: str, split: str | None) -> Any:
    datasets = _datasets()
    try:
        data = datasets.load_dataset(builder, data_files=str(path))
    except Exception as err:  # datasets raises many types for unreadable files
        raise DataError(f"{path}: cannot read as {builder} ({_first_line(err)})") from None
    return _pick_split(data, split, str(path))


def _load_hub(name: str, split: str | None) -> Any:
    datasets = _datasets()
    if not name:
        raise DataError("hf: needs a dataset name, e.g. hf:owner/name")
    try:
        data = datasets.load_dataset(name)
    except Exception as err:  # offline, unknown name, gated: one line
        raise DataError(
            f"hub dataset {name!r} is not available offline or not found ({_first_line(err)})"
        ) from None
    return _pick_split(data, split, f"hf:{name}")


def _from_dataset(data: Any, where: str, limit: int | None, labels: list | None = None) -> list[PromptRow]:
    _check_columns(data.column_names, where)
    if len(data) == 0:
        raise DataError(f"{where}: no rows")
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    keep = [c for c in REQUIRED + OPTIONAL + (SPLIT_COLUMN,) if c in data.column_names]
    rows = []
    for i, values in enumerate(data.select_columns(keep), start=1):
        rows.append(_row(values, f"{where}: row {i}"))
        if labels is not None:
            labels.append(_split_label(values.get(SPLIT_COLUMN), f"{where}: row {i}"))
    return rows


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
