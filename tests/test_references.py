"""Docstrings and comments point only to files inside the repository (a user has nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/work/|shared/notes|notes/[\w-]+\.md")


def test_no_source_file_points_outside_the_repository():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("src", "benchmarks", "tools", "configs")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".md", ".yaml", ".sh", ".sbatch")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)
    assert OUTSIDE.search("see ../shared/notes/eap-ig.md") and OUTSIDE.search("(notes/style.md)")
