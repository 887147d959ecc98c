"""Argument parsing shared by the argparse-based commands: errors become one-line ``ConfigError``s."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from circuitft.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises a one-line :class:`ConfigError` instead of printing usage and exiting 2."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit status when argparse exits by itself (``--help``)."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
