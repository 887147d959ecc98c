"""Upper bounds on what a small input may ask for, and the checks that apply them.

A few bytes of input must never make a command allocate gigabytes or run for minutes before it refuses:
counts given as options (``ig_steps``, batch sizes, rows) are bounded here, and input files must be regular
files (a FIFO or a device such as ``/dev/zero`` would block or never end). Each bound is named in its error,
so a user with a real need sees the figure. Graph shapes are bounded in :mod:`circuitft.eap.io`, YAML in
:mod:`circuitft.safeyaml`, sweep sizes in :mod:`circuitft.commands.sweep`.
"""

from __future__ import annotations

import numbers
import os
import stat
from pathlib import Path
from typing import Any

from circuitft.errors import ConfigError, DataError

MAX_IG_STEPS = 1_000  # EAP-IG uses 5-100 integration steps; memory and time grow with each
MAX_BATCH_SIZE = 65_536
MAX_ROWS = 10_000_000  # rows generated or analysed in one command
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a YAML config or sweep file; real ones are a few KB


def check_count(value: Any, name: str, maximum: int, minimum: int = 1) -> None:
    """ConfigError unless ``value`` is an integer in [minimum, maximum] (the bound named in the message)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers too
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:,} (the limit of circuitft), got {value:,}")


def check_regular_file(path: str | os.PathLike[str], where: str, error: type[Exception] = DataError) -> None:
    """``error`` unless ``path`` is a regular file (or a link to one): not a FIFO, device or socket."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except OSError as err:
        raise error(f"{where}: cannot read it ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{where}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "special"
        )
        raise error(f"{where}: not a regular file ({kind}); give a file on disk")


def read_text_file(path: Path, where: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``max_bytes``); one ConfigError otherwise."""
    check_regular_file(path, where, ConfigError)
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"{where}: {size:,} bytes; a config file may hold at most {max_bytes:,}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read it ({err.strerror or err})") from None


def check_utf8_path(path: str | os.PathLike[str], where: str) -> None:
    """ConfigError when ``path``'s name is not valid UTF-8 (bytes the locale could not decode): circuitft
    writes names into CSV, JSON and HTML, which hold UTF-8 text only."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode(
            "utf-8", "backslashreplace"
        )  # undecodable bytes shown as backslash-x escapes
        raise ConfigError(f"{where} {shown}: the name is not valid UTF-8 text; rename it") from None
