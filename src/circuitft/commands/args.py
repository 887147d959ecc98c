"""Argument parsing shared by the commands other than ``fit``: jsonargparse, like ``fit`` (LightningCLI).

Every command built with :func:`make_parser` takes ``--config FILE`` (a YAML mapping of its options, as
``--print_config`` writes it; options given after it override it) and ``--print_config``, and its ``--help``
lists every option with its type and default. Errors become one-line :class:`ConfigError`\\ s naming the
option (:func:`parse`); jsonargparse has no mutually exclusive groups, so :func:`only_one` checks them
after parsing. The older argparse :class:`OneLineParser` stays for commands with hand-made parsing.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser
from jsonargparse import Path as JsonargparsePath

from circuitft.errors import CircuitftError, ConfigError
from circuitft.safeyaml import check_yaml, read_yaml_file

CONFIG_HELP = "YAML file of these options (as --print_config writes it); options after it override it"


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises a one-line :class:`ConfigError` instead of printing usage and exiting 2."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def flag(help_: str) -> dict[str, Any]:
    """``add_argument`` keywords of a boolean option: ``--opt`` alone is true, ``--opt true|false`` too."""
    return {"type": bool, "nargs": "?", "const": True, "default": False, "help": help_}


def make_parser(prog: str, description: str, before_dump: Callable[[Any], None] | None = None) -> Any:
    """A jsonargparse parser with ``--config``/``--print_config`` that raises instead of exiting.

    ``before_dump(namespace)`` may fill in derived values before ``--print_config`` writes them (so that the
    file it writes means the same wherever it is loaded from)."""

    class CommandParser(ArgumentParser):
        """jsonargparse parser of one circuitft command (see :func:`make_parser`)."""

        def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
            cfg = _absolute_paths(cfg.clone())
            if before_dump is not None:
                before_dump(cfg)
            return super().dump(cfg, *args, **kwargs)

    parser = CommandParser(
        prog=prog,
        description=description,
        exit_on_error=False,
        default_env=False,
        print_config="--print_config",
    )
    parser.add_argument("--config", action=ActionConfigFile, help=CONFIG_HELP)
    return parser


def config_paths(argv: Sequence[str]) -> list[str]:
    """The files named by ``--config``/``-c`` in ``argv`` (in order)."""
    paths = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config_files(argv: Sequence[str]) -> None:
    """One-line errors for a missing, unreadable, non-regular, non-mapping or alias-bomb ``--config`` file,
    and for an option value whose YAML expands beyond the limit (before jsonargparse sees any of it)."""
    paths = config_paths(argv)
    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"config file {p} does not exist")
        data = read_yaml_file(p, f"config file {p}")
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping of options, got {type(data).__name__}")
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if "&" in value and "*" in value and value not in paths:  # anchors and aliases: a possible bomb
            check_yaml(
                value, f"argument {i + 1} ({value[:40]}...)" if len(value) > 40 else f"argument {value}"
            )


def one_line(msg: str) -> str:
    """jsonargparse's (possibly nested, multi-line) message as one line that keeps the cause (LightningCLI's
    errors, whose parser :func:`one_line_error` cannot inspect)."""
    lines = [ln.strip().lstrip("- ").strip() for ln in msg.strip().splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    joined = " ".join(lines)
    if len(joined) <= 400:
        return joined
    return f"{lines[0][:200]} ... {lines[-1][:190]}"


def parse(parser: Any, argv: Sequence[str]) -> Any:
    """Parsed arguments, or the exit status when the parser exits by itself (``--help``,
    ``--print_config``); a bad option or config file raises a one-line :class:`ConfigError`."""
    argv = list(argv)
    check_config_files(argv)
    try:
        return parser.parse_args(argv)
    except ArgumentError as err:
        raise ConfigError(one_line_error(parser, str(err), argv)) from None
    except SystemExit as exit_:
        return int(exit_.code or 0) if isinstance(exit_.code, int) else 2


def only_one(args: Any, names: Sequence[str], where: str = "") -> None:
    """ConfigError when more than one of the options ``names`` is set (not None) in ``args``."""
    given = [f"--{n}" for n in names if getattr(args, n, None) is not None]
    if len(given) > 1:
        options = ", ".join(f"--{n}" for n in names)
        raise ConfigError(f"{where}give only one of {options}; got {' and '.join(given)}")


# ---- one-line messages --------------------------------------------------------------------------------
_KEY = re.compile(r'^Parser key "([^"]+)"(?: element \d+)?:\s*(.*)$', re.S)
_UNKNOWN = re.compile(r"^(?:Option '([^']+)' is not accepted|\w+ '([^']+)' does not accept option '([^']+)')")
_OWN = {"help", "config", "print_config", "print_shtab"}
_VALUE = re.compile(r"(?:Got|Given) value:\s*(.*?)\s*$", re.S)


def one_line_error(parser: Any, message: str, argv: Sequence[str] = ()) -> str:
    """jsonargparse's (possibly nested, multi-line) error as one line naming the option."""
    message = message.strip()
    m = _KEY.match(message)
    if m:
        key, rest = m.group(1), m.group(2)
        option = _option_name(parser, key)
        action = _action(parser, key)
        value = _VALUE.search(rest)
        expected = _expected(action)
        source = _config_source(key, argv)
        if expected and value:
            return f"{option}: expected {expected}, got {value.group(1)!r}{source}"
        detail = re.sub(r"^Not of type \w+:\s*", "", _join(_union_error(rest)))
        return f"{option}: {detail[:1].lower()}{detail[1:]}{source}"
    m = _UNKNOWN.match(message)
    if m:
        key = m.group(1) or (
            m.group(3) if m.group(2) in dict(_subparsers(parser)) else f"{m.group(2)}.{m.group(3)}"
        )
        sub = dict(_subparsers(parser)).get(m.group(2) or "", parser)
        valid = sorted(a.dest for a in sub._actions if a.option_strings and a.dest not in _OWN)
        return f"unknown option {key!r}{_config_source(key, argv)}; valid: {', '.join(valid)}"
    m = re.match(r"the following arguments are required: (.*)$", message)
    if m:
        names = [_option_name(parser, k.strip()) for k in m.group(1).split(",")]
        return f"the following arguments are required: {', '.join(names)}"
    m = re.match(r'expected "(\w+)" to be one of \{(.*)\}, but it was not provided', message)
    if m:
        return f"missing {m.group(1).upper()}: one of {m.group(2).replace(',', ', ')}"
    return _join(message)


def _union_error(text: str) -> str:
    """Of jsonargparse's "does not validate against any of the Union subtypes" list, the error that is not
    about the None alternative (an optional option's real type)."""
    if "Union subtypes" not in text or "Errors:" not in text:
        return text
    errors = text.split("Errors:", 1)[1].split("Given value type:", 1)[0]
    lines = [ln.strip().lstrip("- ").strip() for ln in errors.splitlines() if ln.strip()]
    real = [ln for ln in lines if "NoneType" not in ln]
    return real[0] if real else text


def _join(text: str) -> str:
    lines = [ln.strip().lstrip("- ").strip() for ln in text.strip().splitlines() if ln.strip()]
    joined = " ".join(lines) or "invalid arguments"
    return joined if len(joined) <= 400 else f"{joined[:200]} ... {joined[-190:]}"


def _action(parser: Any, key: str) -> Any:
    """The action of ``key`` in ``parser`` or in one of its subcommands' parsers (``make.n`` or ``n``)."""
    for action in getattr(parser, "_actions", []):
        if action.dest == key:
            return action
    head, _, rest = key.partition(".")
    for name, sub in _subparsers(parser):
        found = _action(sub, rest) if name == head and rest else _action(sub, key)
        if found is not None:
            return found
    return None


def _subparsers(parser: Any) -> list[tuple[str, Any]]:
    out = []
    for action in getattr(parser, "_actions", []):
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            out += [(k, v) for k, v in choices.items() if hasattr(v, "_actions")]
    return out


def _option_name(parser: Any, key: str) -> str:
    action = _action(parser, key)
    if action is None:
        return f"--{key}"
    if action.option_strings:
        return action.option_strings[0]
    return str(action.metavar or action.dest).upper()


def _expected(action: Any) -> str | None:
    """Plain words for the type of the option (None when the type has no short description)."""
    hint = getattr(action, "_typehint", None)
    if hint is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        hint, origin = args[0], typing.get_origin(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    words = {bool: "true or false", int: "an integer", float: "a number"}
    return words.get(hint)


def _config_source(key: str, argv: Sequence[str]) -> str:
    """`` (from config file F)`` when the last config file given sets ``key``."""
    for path in reversed(config_paths(argv)):
        try:
            data = read_yaml_file(path)
        except CircuitftError:
            continue
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return f" (from config file {path})"
    return ""


def _absolute_paths(cfg: Any) -> Any:
    """jsonargparse paths read from a config file are relative to that file: write them absolute."""
    for key, value in list(cfg.items()):
        if isinstance(value, JsonargparsePath) and value.relative != value.absolute:
            cfg[key] = type(value)(value.absolute)
    return cfg
