"""The one ``circuitft`` entry point.

Subcommands dispatch to small modules under :mod:`circuitft.commands` that are imported lazily, so
``circuitft tasks list`` does not pay for importing Lightning or TransformerLens:

- ``fit`` / ``validate`` / ``test``: LightningCLI training (``circuitft.commands.train``)
- ``sweep``: many training runs from one config (``circuitft.commands.sweep``)
- ``circuit``: EAP-IG on one model/adapter (``circuitft.commands.circuit``)
- ``tasks``: list and generate task data (``circuitft.commands.tasks``)
- ``report``: figures and tables of runs and sweeps (``circuitft.commands.report``)
- ``bench``: benchmarks (``circuitft.commands.bench``)
- ``export``: a checkpoint's adapter as a peft folder (``circuitft.commands.export``)
- ``export-graph``: a circuit as GraphML and GEXF (``circuitft.commands.export_graph``)
- ``circuitlora``: CircuitLoRA plans (``circuitft.commands.circuitlora``)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from circuitft import __version__
from circuitft.cache import cache_error
from circuitft.diskfull import disk_full, is_out_of_space
from circuitft.errors import CircuitftError
from circuitft.limits import check_utf8_path

COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("circuitft.commands.train", "fit a LoRA adapter over a stream of tasks (LightningCLI)"),
    "validate": ("circuitft.commands.train", "validate a model on every task (LightningCLI)"),
    "test": ("circuitft.commands.train", "test a model on every task (LightningCLI)"),
    "sweep": ("circuitft.commands.sweep", "run a list of training runs (e.g. all ordered task pairs)"),
    "circuit": ("circuitft.commands.circuit", "find a circuit with EAP-IG and evaluate it"),
    "tasks": ("circuitft.commands.tasks", "list built-in tasks or generate task data"),
    "report": ("circuitft.commands.report", "one static page of figures and tables from runs or a sweep"),
    "bench": ("circuitft.commands.bench", "benchmarks (EAP-IG against the plain-transformers floor)"),
    "export": ("circuitft.commands.export", "write a checkpoint's LoRA adapter as a peft adapter folder"),
    "export-graph": (
        "circuitft.commands.export_graph",
        "write a circuit as GraphML and GEXF (Gephi, Cytoscape)",
    ),
    "circuitlora": (
        "circuitft.commands.circuitlora",
        "plan circuit-aware LoRA ranks (CircuitLoRA) for a fit config",
    ),
}


def _usage() -> str:
    lines = ["usage: circuitft COMMAND [ARGS]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `circuitft COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also used as the console-script entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in ("-V", "--version"):
        print(__version__)
        return 0
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    module = importlib.import_module(COMMANDS[name][0])
    try:
        for i, arg in enumerate(rest):  # bytes the locale cannot decode (a non-UTF-8 file name)
            check_utf8_path(arg, f"argument {i + 1}")
        status = module.main(name, rest)
    except CircuitftError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if is_out_of_space(err):
            print(f"error: {disk_full(err.filename)}", file=sys.stderr)
            return 2
        if not err.filename:  # not about a path the user gave: a real failure, keep the traceback
            raise

        print(
            f"error: {cache_error(err) or f'cannot use {err.filename}: {err.strerror or err}'}",
            file=sys.stderr,
        )
        return 2
    except Exception as err:  # safetensors, torch and Lightning report a full disk in their own types
        if not is_out_of_space(err):
            raise
        print(f"error: {disk_full(None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
