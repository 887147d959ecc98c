"""Atomic writes and the CLI's one-line answer to an unusable output path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from circuitft.cli import main
from circuitft.files import atomic_write_text


def test_atomic_write_text_gives_an_ordinary_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a" / "x.txt", "hello\n")
    finally:
        os.umask(old)
    path = tmp_path / "a" / "x.txt"
    assert path.read_text() == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.txt"]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    from circuitft.files import atomic_write

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.txt", broken)
    assert list(tmp_path.iterdir()) == []


def test_unusable_output_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["tasks", "make", "AddSub", "--n", "3", "--seed", "0", "--out", str(blocker / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot use ") and "Traceback" not in err[0]
