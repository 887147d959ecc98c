"""Docstrings, comments and docs point only to files inside the repository (a user has nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The outside folder's name is assembled here so that this file itself does not contain a reference.
OUTSIDE_DIR = "sha" + "red"
OUTSIDE = re.compile(rf"\.\./{OUTSIDE_DIR}|/work/{OUTSIDE_DIR}|{OUTSIDE_DIR}/notes|notes/[\w-]+\.md")
FOLDERS = ("src", "benchmarks", "tools", "configs", "docs", "demo", "tests")
TOP_FILES = ("README.md", "Makefile", "pyproject.toml")
SUFFIXES = (".py", ".md", ".yaml", ".sh", ".sbatch", ".toml", ".ipynb")


def _files() -> list[Path]:
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for folder in FOLDERS:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in SUFFIXES and p.is_file())
    return files


def test_no_file_points_outside_the_repository():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}"
        for path in _files()
        if path != Path(__file__).resolve()  # the checker itself holds the pattern
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def test_the_pattern_catches_references():
    assert OUTSIDE.search(f"see ../{OUTSIDE_DIR}/notes/some-note.md") and OUTSIDE.search("(notes/style.md)")
    assert not OUTSIDE.search("see docs/engine.md")
