"""Output folders given on the command line: checked writable up front, and errors that name them.

:func:`check_writable` creates and removes a probe file where the output will go (the folder, or its
nearest existing parent), so an unwritable ``--out`` fails before any model work; :func:`output_error`
turns a failure while writing into one line naming the user's path, never an internal temporary one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from circuitft.diskfull import DiskFull, disk_full, is_out_of_space
from circuitft.errors import CircuitftError, ConfigError


def check_writable(out: str | os.PathLike[str], option: str) -> None:
    """ConfigError naming ``option`` unless files can be created in ``out`` (or where it would be made)."""
    out = Path(out)
    folder = out
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {out}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".circuitft-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if is_out_of_space(err):
            raise disk_full(out) from None
        raise ConfigError(f"{option} {out}: cannot write in {folder} ({err.strerror or err})") from None


def output_error(out: Path, err: BaseException, option: str, tmp: Path | None = None) -> CircuitftError:
    """A one-line error about writing ``out`` (the temporary folder ``tmp`` replaced by ``out``)."""
    if isinstance(err, DiskFull) or is_out_of_space(err):
        return disk_full(out)
    text = str(err.strerror or err) if isinstance(err, OSError) else str(err)
    if tmp is not None:
        text = text.replace(str(tmp), str(out))
    if isinstance(err, CircuitftError):
        return type(err)(text)
    return ConfigError(f"{option} {out}: cannot write ({text})")
