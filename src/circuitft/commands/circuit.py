"""``circuitft circuit``: score every edge of one model with EAP(-IG), select a circuit, evaluate it.

    circuitft circuit [--model SPEC] [--adapter DIR | --ckpt FILE] --data FILE --method M [--ig_steps N]
        [--metric kl] [--batch_size B] [--prepend_bos true|false] [--top_n N | --top_frac F | ...]
        [--seed S] --out DIR

Options may also come from ``--config FILE`` (YAML, as ``--print_config`` writes it; options given after it
override it). Writes ``DIR/graph.json`` (every edge with its score; ``in_graph`` marks the circuit, the reference
library's format), ``DIR/graph.safetensors`` (the same, compact) and ``DIR/metrics.json`` (faithfulness,
accuracies, sizes, a random baseline, a size curve and the smallest circuit reaching 0.8, settings, seconds,
``warnings``, one-sentence ``definitions`` and a plain-language ``summary``, also printed). Every option, the data
file and its tokenization are checked before the model is run; the outputs are written to a temporary folder
and moved into ``DIR`` at the end, so a failed run leaves nothing under ``DIR``.

The attribution options are the fields of :class:`circuitft.eap.settings.CircuitSettings` (declared and checked
there); the work is :func:`circuitft.eap.pipeline.find_circuit`. This module parses, reads the inputs
(:mod:`circuitft.commands.circuit_inputs`), calls the pipeline, prints and writes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from circuitft.commands.args import flag, make_parser, only_one, parse
from circuitft.eap.settings import CircuitSettings
from circuitft.eap.summary import summary_text
from circuitft.errors import ConfigError
from circuitft.models import DEFAULT_MODEL
from circuitft.preflight import model_problem

SETTINGS = tuple(f.name for f in fields(CircuitSettings) if f.name != "where")  # the options it declares


def build_parser(prog: str = "circuitft circuit") -> Any:
    """The command's argument parser (jsonargparse: ``--config FILE``, ``--print_config``); the attribution
    options come from :class:`~circuitft.eap.settings.CircuitSettings`."""
    p = make_parser(prog, "Find a circuit with EAP(-IG) on one model and evaluate it.")
    p.add_argument(
        "--model",
        type=str | None,
        default=None,
        help=f"model spec (built-in name, folder or hub name; null: {DEFAULT_MODEL}, the embedded SmolLM2-135M-"
        "Instruct, or with --ckpt the checkpoint's model)",
    )
    p.add_argument(
        "--adapter",
        type=Path | None,
        default=None,
        help="peft LoRA adapter folder to merge into the model (not with --ckpt)",
    )
    p.add_argument(
        "--ckpt",
        type=Path | None,
        default=None,
        help="circuitft training checkpoint (.ckpt) with a LoRA adapter (not with --adapter)",
    )
    p.add_argument(
        "--data", type=str, required=True, help="task rows: CSV/TSV/JSONL file, dataset folder or hf:NAME"
    )
    p.add_argument(
        "--task",
        type=str | None,
        default=None,
        help="task name recorded in the outputs (null: the data file's stem)",
    )
    p.add_argument("--limit", type=int | None, default=None, help="use only the first N rows (null: all)")
    p.add_argument(
        "--graph",
        type=Path | None,
        default=None,
        help="evaluate a saved graph (graph.json, reference format, or .safetensors) instead of attributing; "
        "its circuit is used unless a size option (--top_n, ...) reselects from its scores",
    )
    p.add_class_arguments(CircuitSettings, skip={"where"}, as_group=False)
    p.add_argument(
        "--prepend_bos",
        type=bool | None,
        default=None,
        help="prepend BOS to prompts: true or false (null: if the tokenizer has one)",
    )
    p.add_argument(
        "--on_mismatch",
        type=Literal["drop", "error"],
        default="drop",
        help="rows whose clean/corrupted prompts tokenize to different lengths: drop or error",
    )
    p.add_argument(
        "--heldout_data",
        type=str | None,
        default=None,
        help="rows to also score the circuit on, not used to find it (*_heldout in metrics.json; rows whose "
        "clean prompt is in --data are dropped; not with --heldout_frac)",
    )
    p.add_argument(
        "--mib",
        **flag(
            "also write the circuits at MIB's edge fractions (0.1% ... 50%) and the edge scores as "
            "DIR/mib/<task>_<model>/, the layout MIB's circuit-track evaluation reads; the size curve then "
            "holds MIB's fractions (for cpr and cmd)"
        ),
    )
    p.add_argument(
        "--device", type=str, default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", **flag("no progress bars"))
    return p


def settings_of(args: argparse.Namespace) -> CircuitSettings:
    """The :class:`CircuitSettings` of the parsed options (checked; ``--mib`` turns ``size_curve: auto`` into
    ``mib``)."""
    values = {name: getattr(args, name) for name in SETTINGS}
    if args.mib and str(values["size_curve"]).strip().lower() == "auto":
        values["size_curve"] = "mib"
    return CircuitSettings(**values)


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft circuit``; returns the exit status (user errors raise CircuitftError)."""
    parser = build_parser(f"circuitft {name}")
    args = parse(parser, argv)
    if isinstance(args, int):  # --help, --print_config
        return args
    only_one(args, ("adapter", "ckpt"))
    settings = settings_of(args)  # every attribution option, before the model is looked at
    if args.model is not None:
        problem = model_problem(args.model)  # a hub model missing from the cache: at once, before loading
        if problem:
            raise ConfigError(f"--model {args.model}: {problem}")
    from circuitft.commands.circuit_run import run  # torch and the engine: only on this path (see there)

    metrics = run(args, settings)
    for warning in metrics["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_text(metrics, with_warnings=False))  # the warnings went to stderr
    keys = ("n_edges", "n_nodes", "faithfulness", "kl_recovered_pct", "model_accuracy", "circuit_accuracy")
    keys = tuple(k for k in keys if k in metrics)
    print(" ".join(f"{k}={_fmt(metrics.get(k))}" for k in keys) + f" -> {args.out}")
    return 0


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["build_parser", "main", "settings_of"]
