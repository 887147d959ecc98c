"""The learning curve of every first task of a pair sweep: its held-out accuracy at each forgetting-curve point
of its shared prefix (``<root>/.prefixes/*/circuits/accuracy.jsonl``), as CSV.

    python tools/first_stage_curves.py runs/demo_pairs --out docs/results/demo_pairs/first_stage_curves.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from circuitft.files import atomic_write_text
from circuitft.runfolder import RunFolder
from circuitft.sweeps.prefix import PREFIXES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="the sweep's root folder")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = []
    for folder in sorted((args.root / PREFIXES).iterdir()):
        if not folder.is_dir():
            continue
        for rec in RunFolder(folder).accuracy_log().read():
            rows.append(
                {"prefix": folder.name, "task": rec["task"], "step": rec["step"], "accuracy": rec["accuracy"],
                 "n_rows": rec["n_rows"]}  # fmt: skip
            )
    if not rows:
        print(f"error: {args.root / PREFIXES}: no forgetting-curve records", file=sys.stderr)
        return 2
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    for r in rows:
        print(f"{r['task']:<10} step {r['step']:>4}: {r['accuracy']:.3f} (n = {r['n_rows']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
