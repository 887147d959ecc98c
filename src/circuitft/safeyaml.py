"""Reading YAML that a user gave (configs, sweep files, a run's ``config.yaml``) with bounded work.

PyYAML shares the node an alias points to, so ``yaml.safe_load`` of a "billion laughs" file is quick, but
anything that walks the result (jsonargparse, ``copy.deepcopy``, dumping it) expands every alias and hangs.
:func:`check_yaml` composes the document once and counts the nodes it stands for once aliases are
expanded (shared nodes counted once per use, without expanding them); above :data:`MAX_YAML_NODES`, a
recursive alias, or nesting deeper than Python can follow, it raises one :class:`ConfigError`. Every
command checks its YAML this way before jsonargparse (or anything else) sees it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from circuitft.errors import ConfigError
from circuitft.limits import read_text_file

MAX_YAML_NODES = 200_000  # a large sweep file has a few thousand; jsonargparse takes seconds per 100k
# libyaml when PyYAML has it: 100x faster, and it stops at 1,000 levels of nesting in a moment (pure Python
# PyYAML takes seconds to reach Python's recursion limit on a 200 KB file of brackets)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def expanded_size(node: yaml.Node, limit: int = MAX_YAML_NODES) -> int:
    """Nodes of ``node`` with aliases expanded (stops counting just above ``limit``).

    ValueError for a recursive alias (a node that contains itself)."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        if key in active:
            raise ValueError("a recursive alias (a node that contains itself)")
        if isinstance(n, yaml.ScalarNode):
            return 1
        active.add(key)
        total = 1
        children = n.value if isinstance(n, yaml.SequenceNode) else [x for kv in n.value for x in kv]
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        memo[key] = total
        return total

    return size(node)


def check_yaml(text: str, where: str, limit: int = MAX_YAML_NODES) -> None:
    """ConfigError (starting with ``where``) when ``text`` expands beyond ``limit`` nodes or nests too deeply.

    Malformed YAML passes: the reader that follows reports it with its line and column."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
        if node is None:
            return
        n = expanded_size(node, limit)
    except yaml.YAMLError as err:
        if "nesting depth" in str(err):
            raise ConfigError(f"{where}: YAML nested too deeply to read") from None
        return
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply to read") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}; refused") from None
    if n > limit:
        raise ConfigError(
            f"{where}: YAML expands to more than {limit:,} values once its aliases (*name) are expanded; "
            "refused (a config this large is a mistake or an attack)"
        )


def load_yaml(text: str, where: str, limit: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load(text)`` after :func:`check_yaml`; malformed YAML is one ConfigError naming line and column."""
    check_yaml(text, where, limit)
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}:{at} malformed YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply to read") from None


def read_yaml_file(path: str | os.PathLike[str], where: str | None = None) -> Any:
    """The YAML document in ``path`` (a regular file of at most 16 MB), checked by :func:`load_yaml`."""
    where = where or f"{path}"
    return load_yaml(read_text_file(Path(path), where), where)
