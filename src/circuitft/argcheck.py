"""Argument checks of the public Python API: a wrong type is one :class:`ConfigError`, never a raw
``TypeError`` or ``AttributeError`` from deep inside (the CLI checks its options the same way)."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

from circuitft.errors import ConfigError
from circuitft.limits import check_count


def _type_names(types: tuple[type, ...], none: bool) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
    words = [names.get(t.__name__, t.__name__) for t in types]
    if os.PathLike in types:
        words = [w for w in words if w != "PathLike"] + ["a path"]
    if none:
        words.append("None")
    return " or ".join(dict.fromkeys(words))


def need(value: Any, name: str, *types: type, none: bool = False) -> None:
    """ConfigError unless ``value`` is an instance of one of ``types`` (or None with ``none``); a bool is
    not accepted as a number."""
    if value is None and none:
        return
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:  # numpy integers and floats count as numbers
        ok = isinstance(value, types) or (int in types and isinstance(value, numbers.Integral))
        ok = ok or (float in types and isinstance(value, numbers.Real))
    if not ok:
        raise ConfigError(
            f"{name} must be {_type_names(types, none)}, got {type(value).__name__} {value!r:.60}"
        )


def need_count(value: Any, name: str, maximum: int, *, none: bool = False) -> None:
    """ConfigError unless ``value`` is an integer in [1, maximum] (or None with ``none``)."""
    if value is None and none:
        return
    check_count(value, name, maximum)


def need_fraction(value: Any, name: str, *, none: bool = False) -> None:
    """ConfigError unless ``value`` is a finite number in (0, 1] (or None with ``none``)."""
    need(value, name, int, float, none=none)
    if value is not None and not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(f"{name} must be a fraction in (0, 1], got {value!r}")


def need_number(value: Any, name: str, *, none: bool = False) -> None:
    """ConfigError unless ``value`` is a finite number (or None with ``none``)."""
    need(value, name, int, float, none=none)
    if value is not None and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
