"""``circuitft report RUN_DIR [RUN_DIR ...] --out DIR``: the prior work's analysis of runs as one static page.

Parses, calls :mod:`circuitft.report` (what the report reads and writes is described there) and prints
the warnings and a one-line summary. The options of :class:`~circuitft.report.options.ReportOptions` are
derived from the dataclass, which also checks them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitft.commands.args import make_parser, parse
from circuitft.report.options import ReportOptions


def build_parser(prog: str = "circuitft report") -> Any:
    """The command's arguments (the options of ``ReportOptions`` and the run folders and ``--out``)."""
    p = make_parser(prog, "One page of figures and tables from runs.")
    p.add_argument("runs", nargs="+", type=Path, help="run folders, or folders of runs (a sweep)")
    p.add_argument("--out", required=True, type=Path, help="output folder (index.html, figures/, tables/)")
    p.add_class_arguments(ReportOptions, None)
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft report``."""
    args = parse(build_parser(f"circuitft {name}"), argv)
    if isinstance(args, int):
        return args
    from circuitft.report.build import read_runs, write_report  # pandas, matplotlib: only for a report

    options = ReportOptions(args.threshold, args.top_frac, args.max_run_sections, args.max_edges)
    t0 = time.perf_counter()
    runs = read_runs(list(args.runs), args.out)
    summary = write_report(runs, args.out, options)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"report: {len(runs)} runs, {summary['figures']} figures, {summary['tables']} tables -> "
        f"{args.out / 'index.html'} ({time.perf_counter() - t0:.1f} s)"
    )
    return 0
