"""Atomic writes and the CLI's one-line answer to an unusable output path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from circuitft.cli import main
from circuitft.errors import ConfigError, DataError
from circuitft.files import atomic_folder, atomic_write_text


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


def test_atomic_folder_into_an_existing_folder_replaces_its_files_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    atomic_folder(lambda d: [(d / n).write_text("1") for n in ("a", "b")], out)
    (out / "notes.txt").write_text("mine")
    atomic_folder(lambda d: (d / "a").write_text("2"), out)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "2", "b": "1", "notes.txt": "mine"}
    atomic_folder(lambda d: [(d / n).write_text("3") for n in ("a", "c")], out, overwrite=False)
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "a": "2",
        "b": "1",
        "c": "3",
        "notes.txt": "mine",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_atomic_folder_replace_swaps_the_whole_folder_and_keeps_it_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "report"
    atomic_folder(lambda d: [(d / n).write_text("1") for n in ("a", "old")], out, replace=True)
    atomic_folder(lambda d: (d / "a").write_text("2"), out, replace=True)
    assert sorted(p.name for p in out.iterdir()) == ["a"] and (out / "a").read_text() == "2"

    def broken(d: Path) -> None:
        (d / "a").write_text("3")
        raise ConfigError("stop")

    with pytest.raises(ConfigError):
        atomic_folder(broken, out, replace=True)
    assert (out / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary or old folder left


def test_atomic_folder_errors_name_the_folder_not_the_temporary_one(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def unreadable(d: Path) -> None:
        raise DataError(f"{d / 'graph.json'}: bad")

    with pytest.raises(DataError) as err:
        atomic_folder(unreadable, out, option="--out")
    assert str(err.value) == f"{out / 'graph.json'}: bad"

    def refused(d: Path) -> None:
        raise PermissionError(13, "Permission denied", str(d / "x"))

    with pytest.raises(ConfigError) as err:
        atomic_folder(refused, out, option="--out")
    assert str(err.value) == f"--out {out}: cannot write (Permission denied)"
    with pytest.raises(PermissionError):  # without an option (a cache): the OSError for the caller to handle
        atomic_folder(refused, out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=f"^--out {tmp_path / 'file'}: cannot write") as err:
        atomic_folder(lambda d: (d / "a").write_text("1"), tmp_path / "file", option="--out")
    assert ".tmp" not in str(err.value) and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
