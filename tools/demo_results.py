"""Write the demo's results file: the numbers README.md states for `make demo`, read from the demo's run folder.

    .venv/bin/python tools/demo_results.py runs/demo --out docs/results/demo.json     (make demo runs it)

Every number is rounded to the digits README.md prints, so a seeded demo reproduces its file exactly and
``tests/docs/test_results.py`` checks the README's demo section against it. For a stream of two tasks A -> B
(``configs/demo.yaml``: AddSub -> AddSubInv), from the circuit records (``circuits/metrics.jsonl``: model and
circuit accuracy and faithfulness on the held-out validation pairs of each analysis):

- ``table``: per row (the untuned model at step 0, the end of A, the end of B): A's and B's model accuracy and
  A's circuit faithfulness, with the step;
- ``ACC`` and ``BWT`` of the model-accuracy matrix (:mod:`circuitft.analysis.continual`);
- ``circuit_accuracy``: A's circuit accuracy at the end of A and at the end of B;
- ``edge_change_pct`` and ``node_jaccard``: the range (min, max) over every task's consecutive analyses of the
  share of top-5% edges that changed (in %) and of the circuits' node Jaccard;
- ``overlap_top5_edges``: the top-5% edge Jaccard of A's and B's circuits at the last analysis.

The file also holds the command, the config, the date, the model and the seed. Two runs with the same seed on
the same machine give the same file except the date.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from circuitft.analysis.continual import accuracy_matrix, summaries
from circuitft.analysis.measures import top_jaccard
from circuitft.analysis.runs import read_run
from circuitft.errors import CircuitftError
from circuitft.files import atomic_write_text


def _r(value: float, digits: int = 2) -> float | None:
    """``value`` rounded as printed (None for NaN); -0.0 becomes 0.0."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits) + 0.0


def demo_numbers(folder: Path) -> dict[str, Any]:
    """The demo's numbers (see the module docstring) from the run folder ``folder``."""
    run = read_run(folder)
    if len(run.tasks) != 2:
        raise CircuitftError(f"{folder}: the demo trains two tasks, this run {len(run.tasks)}")
    a, b = run.tasks
    ends = {"untuned": 0, "end_a": run.end_step(a, of_task=a), "end_b": run.end_step(a, of_task=b)}
    table = {
        row: {
            "step": step,
            f"{a}_accuracy": _r(run.value(step, a, "model_accuracy")),
            f"{b}_accuracy": _r(run.value(step, b, "model_accuracy")),
            f"{a}_faithfulness": _r(run.value(step, a, "faithfulness")),
        }
        for row, step in ends.items()
    }
    matrix, base = accuracy_matrix(run, "model_accuracy")
    summary = summaries(matrix, base)
    records = run.records
    changes, nodes = [], []
    for path in sorted((folder / "circuits").glob("metrics.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            overlap = rec.get("overlap") or {}
            if "edge_change" in overlap:
                changes.append(100 * overlap["edge_change"])
                nodes.append(overlap["node_jaccard"])
    last = int(records["step"].max())
    return {
        "tasks": [a, b],
        "table": table,
        "ACC": _r(summary["ACC"]),
        "BWT": _r(summary["BWT"]),
        "circuit_accuracy": {
            "end_a": _r(run.value(ends["end_a"], a, "circuit_accuracy")),
            "end_b": _r(run.value(ends["end_b"], a, "circuit_accuracy")),
        },
        "edge_change_pct": [_r(min(changes), 0), _r(max(changes), 0)] if changes else None,
        "node_jaccard": [_r(min(nodes)), _r(max(nodes))] if nodes else None,
        "overlap_top5_edges": {
            "step": last,
            "jaccard": _r(top_jaccard(run.graph(last, a), run.graph(last, b))),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Write the results file; one line and exit 2 on a folder that is not a finished two-task run."""
    p = argparse.ArgumentParser(description="Write the demo's results file from its run folder.")
    p.add_argument("run", type=Path, help="the demo's run folder (runs/demo)")
    p.add_argument("--out", type=Path, required=True, help="the results file (docs/results/demo.json)")
    p.add_argument("--command", default="make demo", help="the command that made the run")
    p.add_argument("--config", default="configs/demo.yaml", help="the run's config")
    args = p.parse_args(argv)
    try:
        numbers = demo_numbers(args.run)
        config = _config(args.run)
    except (CircuitftError, OSError, KeyError, ValueError) as err:
        print(f"error: {args.run}: cannot read the demo's numbers ({err})", file=sys.stderr)
        return 2
    record = {
        "name": "demo",
        "command": args.command,
        "config": args.config,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "model": config.get("model", {}).get("model"),
        "seed": config.get("seed_everything"),
        "numbers": numbers,
    }
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"the demo's numbers: {args.out}")
    return 0


def _config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "config.yaml").read_text()) or {}


if __name__ == "__main__":
    sys.exit(main())
