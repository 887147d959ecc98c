"""``circuitft tasks``: list the built-in tasks, show rows, write seeded task files, check user files.

- ``circuitft tasks list``
- ``circuitft tasks show NAME [--n 5] [--seed 0] [--split S] [--param key=value ...]``
- ``circuitft tasks make NAME --n N --seed S [--split S] [--out FILE.csv|.jsonl] [--model SPEC] [--param ...]``
- ``circuitft tasks check FILE --model SPEC [--no-bos] [--tokenizer_only] [--batch_size B] [--device D]``

``check`` also flags answers that join their prompt differently than in running text (e.g. a missing
leading space) and, unless ``--tokenizer_only``, prints the model's accuracy on the rows with a warning
below 20%. ``show`` also prints the size of each split (train/val/test: distinct problems). ``make`` prints CSV to
stdout when there is no ``--out`` (the same arguments give the same bytes) and writes ``--out``
atomically; with ``--model`` rows whose clean/corrupted prompts tokenize to different lengths are resampled
and the count is reported on stderr. ``--split train|val|test`` draws from that split only: with the
task's seed (the stream's ``seed`` plus its position unless set), its ``n_train``/``n_val``/``n_test`` and
``--model``, these are exactly the rows a training run uses (and keeps in ``<run>/data/<task>/``);
``--split all`` (the default) ignores the partition.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from circuitft.commands.args import OneLineParser, parse
from circuitft.data.rows import PromptRow, rows_to_csv
from circuitft.errors import ConfigError
from circuitft.files import atomic_write_text


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog, description="List built-in tasks, generate task data, check task files."
    )
    sub = parser.add_subparsers(dest="action", required=True, parser_class=OneLineParser, metavar="ACTION")
    sub.add_parser("list", help="built-in tasks with a one-line description")

    def task_args(p: argparse.ArgumentParser, n_default: int | None) -> None:
        p.add_argument("name", metavar="NAME", help="task name (see `circuitft tasks list`)")
        p.add_argument("--n", type=int, default=n_default, required=n_default is None, help="number of rows")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument(
            "--split", choices=("train", "val", "test", "all"), default="all",
            help="draw from this split only (default all: ignore the train/val/test partition)",
        )  # fmt: skip
        p.add_argument(
            "--param", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
            help="task parameter, e.g. lo=1 hi=9 (see `circuitft tasks show NAME`)",
        )  # fmt: skip

    show = sub.add_parser("show", help="describe a task and print a few rows")
    task_args(show, 5)
    make = sub.add_parser("make", help="generate rows as CSV (stdout) or to --out FILE.csv|.jsonl")
    task_args(make, None)
    make.add_argument("--out", type=Path, help="output file (.csv or .jsonl), written atomically")
    make.add_argument("--model", help="model spec whose tokenizer the rows must fit (resamples mismatches)")
    make.add_argument("--no-bos", action="store_true", help="with --model: do not prepend BOS")
    check = sub.add_parser(
        "check",
        help="validate a task file against a model's tokenizer and measure the model's accuracy on it",
    )
    check.add_argument("file", metavar="FILE", help="CSV, JSONL, dataset folder or hf:NAME")
    check.add_argument(
        "--model", required=True, help="model spec: its tokenizer checks the rows and the model answers them"
    )
    check.add_argument("--no-bos", action="store_true", help="do not prepend BOS")
    check.add_argument(
        "--tokenizer_only", action="store_true",
        help="check tokenization only; do not run the model to measure its accuracy on the rows",
    )  # fmt: skip
    check.add_argument(
        "--batch_size", type=int, default=8, help="rows per batch for the accuracy (default 8)"
    )
    check.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    return parser


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft tasks ...``; returns the exit status (user errors raise CircuitftError)."""
    parser = _build_parser(f"circuitft {name}")
    args = parse(parser, argv)
    if isinstance(args, int):  # --help
        return args
    if args.action == "list":
        return _list()
    if args.action == "show":
        return _show(args)
    if args.action == "make":
        return _make(args)
    return _check(args)


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _check_n(n: int) -> None:
    if n <= 0:
        raise ConfigError(f"--n must be a positive integer, got {n}")


def _list() -> int:
    from circuitft.data.tasks import describe, task_names

    names = task_names()
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  {describe(n)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from circuitft.data.tasks import describe, get_task, make_rows, split_limits, split_sizes, task_params

    spec = get_task(args.name)
    _check_n(args.n)
    params = _params(args.param)
    rows = make_rows(spec.name, args.n, args.seed, _split(args), **params)
    print(f"{spec.name}: {describe(spec.name)}")
    print("parameters: " + "; ".join(f"{k}: {v}" for k, v in task_params(spec.name).items()))
    sizes = split_sizes(spec.name, **params)
    if sizes is None:
        print("splits (80/10/10 by a hash of the clean prompt): train, val, test each large (not enumerated)")
    else:
        total = sum(sizes.values())
        parts = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"splits (exact; by a hash of the clean prompt): {parts} distinct problems (of {total})")
        limits = split_limits(spec.name, **params)
        if limits != sizes:
            most = ", ".join(f"{k} {v}" for k, v in limits.items())
            print(f"rows alternate between kinds: at most {most} rows of distinct problems")
    for i, row in enumerate(rows, start=1):
        print(f"\n[{i}] clean:     {row.clean!r}")
        print(f"    corrupted: {row.corrupted!r}")
        print(f"    answer:    {row.answer!r}   wrong: {row.wrong!r}")
    return 0


def _make(args: argparse.Namespace) -> int:
    from circuitft.data.tasks import get_task, make_pairs, make_rows

    spec = get_task(args.name)
    _check_n(args.n)
    params = _params(args.param)
    fmt = "csv"
    if args.out is not None:
        fmt = args.out.suffix.lower().lstrip(".")
        if fmt not in ("csv", "jsonl"):
            raise ConfigError(f"--out {args.out}: the file name must end in .csv or .jsonl")
    if args.model:
        from circuitft.models.loading import load_tokenizer

        spec.resolve(params)  # bad parameters fail before a tokenizer is loaded
        tokenizer = load_tokenizer(args.model)
        bos = False if args.no_bos else None
        pairs = make_pairs(spec.name, tokenizer, args.n, args.seed, bos, _split(args), **params)
        rows, note = pairs.rows, f"{pairs.n_dropped} rows resampled (clean/corrupted token lengths differed)"
        note += f" for {args.model}; longest sequence {pairs.max_len} tokens"
    else:
        rows = make_rows(spec.name, args.n, args.seed, _split(args), **params)
        note = "0 rows resampled (no --model given: token lengths not checked)"
    text = to_jsonl(rows) if fmt == "jsonl" else to_csv(rows)
    if args.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        print(f"{spec.name}: {len(rows)} {args.split} rows, seed {args.seed}; {note}", file=sys.stderr)
    else:
        atomic_write_text(args.out, text)
        print(f"{spec.name}: wrote {len(rows)} rows to {args.out}; {note}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from circuitft.commands.tasks_check import check

    return check(args)


def _split(args: argparse.Namespace) -> str | None:
    return None if args.split == "all" else args.split


def to_csv(rows: Sequence[PromptRow]) -> str:
    """Rows as CSV text with header ``clean,corrupted,answer,wrong`` and ``\\n`` line ends."""
    return rows_to_csv(rows)


def to_jsonl(rows: Sequence[PromptRow]) -> str:
    """Rows as JSON Lines (one object per row, non-ASCII kept as is)."""
    return "".join(json.dumps(row.to_dict(), ensure_ascii=False) + "\n" for row in rows)
