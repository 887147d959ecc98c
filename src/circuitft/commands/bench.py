"""``circuitft bench eap``: time EAP-IG attribution and circuit evaluation against a plain-transformers floor
(measured by :mod:`circuitft.timing`; this module parses and prints).

What the floor is: :mod:`circuitft.timing`. Each figure is the best of ``--repeats``. Prints ONE JSON line (wall
time ratios ``eap_ratio`` / ``eval_ratio``, and the same in process CPU time, ``*_ratio_cpu``, which other
jobs on a busy machine disturb far less with one thread) and a one-line summary on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

import torch

from circuitft.commands.args import make_parser, parse
from circuitft.models import DEFAULT_MODEL
from circuitft.timing import run_eap_bench


def _parser() -> Any:
    p = make_parser("circuitft bench", __doc__.splitlines()[0])
    p.add_argument("which", type=Literal["eap"], metavar="BENCHMARK", help="benchmark to run: eap")
    p.add_argument(
        "--model",
        type=str,
        default=DEFAULT_MODEL,
        help=f"model spec (default: {DEFAULT_MODEL}, the embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument("--batch_size", type=int, default=6, help="examples per batch")
    p.add_argument("--seq_len", type=int, default=25, help="tokens per synthetic example")
    p.add_argument("--batches", type=int, default=2, help="batches per timed run")
    p.add_argument("--ig_steps", type=int, default=5, help="integrated-gradient steps")
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions; the best is reported")
    p.add_argument("--device", type=str | None, default=None, help="cpu or cuda (null: cuda when available)")
    p.add_argument(
        "--threads", type=int | None, default=None, help="torch intra-op threads (null: torch's default)"
    )
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft bench``."""
    args = parse(_parser(), argv)
    if isinstance(args, int):  # --help, --print_config
        return args
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run_eap_bench(
        args.model, args.batch_size, args.seq_len, args.batches, args.ig_steps, args.repeats, args.device
    )
    print(json.dumps(record))
    print(
        f"eap {record['eap_ratio']}x its floor, evaluation {record['eval_ratio']}x its floor "
        f"({record['threads']} threads, {record['device']}, best of {args.repeats}; in process CPU time: "
        f"{record['eap_ratio_cpu']}x, {record['eval_ratio_cpu']}x)",
        file=sys.stderr,
    )
    return 0
