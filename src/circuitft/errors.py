"""User-facing errors: each one is printed as a single line by the CLI (no traceback)."""

from __future__ import annotations


class CircuitftError(Exception):
    """A problem with the user's input (file, row, column, option) rather than a bug.

    The message must name what is wrong and where; the CLI prints ``error: <message>`` and exits 2.
    """


class ModelSpecError(CircuitftError):
    """A model spec that cannot be resolved (unknown name, missing folder, hub model not available)."""


class DataError(CircuitftError):
    """Task data that cannot be used (missing file or column, empty file, token-length mismatch)."""


class ConfigError(CircuitftError):
    """A configuration value that is out of range or inconsistent."""
