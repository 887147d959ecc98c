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
from typing import Any, Literal

from circuitft.commands.args import flag, make_parser, parse
from circuitft.data.rows import PromptRow, rows_to_csv
from circuitft.errors import ConfigError
from circuitft.files import atomic_write_text
from circuitft.limits import MAX_ROWS, check_count
from circuitft.models import DEFAULT_MODEL


def _build_parser(prog: str) -> Any:
    parser = make_parser(prog, "List built-in tasks, generate task data, check task files.")

    def sub_parser(action: str, description: str) -> Any:
        return make_parser(f"{prog} {action}", description)

    def task_args(p: Any, n_default: int | None) -> None:
        p.add_argument("name", type=str, metavar="NAME", help="task name (see `circuitft tasks list`)")
        if n_default is None:
            p.add_argument("--n", type=int, required=True, help="number of rows")
        else:
            p.add_argument("--n", type=int, default=n_default, help="number of rows")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        p.add_argument(
            "--split",
            type=Literal["train", "val", "test", "all"],
            default="all",
            help="draw from this split only (all: ignore the train/val/test partition)",
        )
        p.add_argument(
            "--param",
            type=str,
            default=[],
            metavar="KEY=VALUE",
            help="task parameters, e.g. --param lo=1 hi=9 (see `circuitft tasks show NAME`)",
            nargs="+",
            action="extend",
        )

    list_ = sub_parser("list", "Built-in tasks with a one-line description.")
    show = sub_parser("show", "Describe a task, the size of its splits and a few rows.")
    task_args(show, 5)
    make = sub_parser("make", "Generate rows as CSV (stdout) or to --out FILE.csv|.jsonl.")
    task_args(make, None)
    make.add_argument(
        "--out", type=Path | None, default=None, help="output file (.csv or .jsonl), written atomically"
    )
    make.add_argument(
        "--model",
        type=str | None,
        default=None,
        help="model spec whose tokenizer the rows must fit (resamples mismatches)",
    )
    make.add_argument("--no_bos", "--no-bos", **flag("with --model: do not prepend BOS"))
    check = sub_parser(
        "check", "Validate a task file against a model's tokenizer and measure the model's accuracy on it."
    )
    check.add_argument("file", type=str, metavar="FILE", help="CSV, JSONL, dataset folder or hf:NAME")
    check.add_argument(
        "--model",
        type=str,
        default=DEFAULT_MODEL,
        help=f"model spec: its tokenizer checks the rows, the model answers them (default: {DEFAULT_MODEL}, the "
        "embedded SmolLM2-135M-Instruct)",
    )
    check.add_argument("--no_bos", "--no-bos", **flag("do not prepend BOS"))
    check.add_argument(
        "--tokenizer_only", **flag("check tokenization only; do not run the model to measure its accuracy")
    )
    check.add_argument("--batch_size", type=int, default=8, help="rows per batch for the accuracy")
    check.add_argument(
        "--device", type=str, default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)"
    )
    sub = parser.add_subcommands(dest="action", required=True)
    sub.add_subcommand("list", list_, help="built-in tasks with a one-line description")
    sub.add_subcommand("show", show, help="describe a task and print a few rows")
    sub.add_subcommand("make", make, help="generate rows as CSV (stdout) or to --out FILE.csv|.jsonl")
    sub.add_subcommand(
        "check", check, help="validate a task file against a model's tokenizer; the model's accuracy on it"
    )
    return parser


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft tasks ...``; returns the exit status (user errors raise CircuitftError)."""
    parser = _build_parser(f"circuitft {name}")
    parsed = parse(parser, argv)
    if isinstance(parsed, int):  # --help, --print_config
        return parsed
    args = parsed[parsed.action]  # the action's own options
    if parsed.action == "list":
        return _list()
    if parsed.action == "show":
        return _show(args)
    if parsed.action == "make":
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
    check_count(n, "--n", MAX_ROWS)


def _registry() -> Any:
    """:mod:`circuitft.data.tasks` (torch comes with it): loaded by an action, never by ``tasks --help``."""
    from circuitft.data import tasks

    return tasks


def _list() -> int:
    registry = _registry()
    names = registry.task_names()
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  {registry.describe(n)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    registry = _registry()
    spec = registry.get_task(args.name)
    _check_n(args.n)
    params = _params(args.param)
    rows = registry.make_rows(spec.name, args.n, args.seed, _split(args), **params)
    print(f"{spec.name}: {registry.describe(spec.name)}")
    print("parameters: " + "; ".join(f"{k}: {v}" for k, v in registry.task_params(spec.name).items()))
    sizes = registry.split_sizes(spec.name, **params)
    if sizes is None:
        print("splits (80/10/10 by a hash of the clean prompt): train, val, test each large (not enumerated)")
    else:
        total = sum(sizes.values())
        parts = ", ".join(f"{k} {v}" for k, v in sizes.items())
        print(f"splits (exact; by a hash of the clean prompt): {parts} distinct problems (of {total})")
        limits = registry.split_limits(spec.name, **params)
        if limits != sizes:
            most = ", ".join(f"{k} {v}" for k, v in limits.items())
            print(f"rows alternate between kinds: at most {most} rows of distinct problems")
    for i, row in enumerate(rows, start=1):
        print(f"\n[{i}] clean:     {row.clean!r}")
        print(f"    corrupted: {row.corrupted!r}")
        print(f"    answer:    {row.answer!r}   wrong: {row.wrong!r}")
    return 0


def _make(args: argparse.Namespace) -> int:
    registry = _registry()
    spec = registry.get_task(args.name)
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
        pairs = registry.make_pairs(spec.name, tokenizer, args.n, args.seed, bos, _split(args), **params)
        rows, note = pairs.rows, f"{pairs.n_dropped} rows resampled (clean/corrupted token lengths differed)"
        note += f" for {args.model}; longest sequence {pairs.max_len} tokens"
    else:
        rows = registry.make_rows(spec.name, args.n, args.seed, _split(args), **params)
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
