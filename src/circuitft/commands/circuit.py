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
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from circuitft.commands.args import flag, make_parser, only_one, parse
from circuitft.eap.settings import CircuitSettings, check_selection
from circuitft.eap.summary import add_readings, summary_text
from circuitft.errors import ConfigError
from circuitft.files import atomic_folder
from circuitft.models import DEFAULT_MODEL
from circuitft.outputs import check_writable
from circuitft.owned import check_owned, mark
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
    settings_of(args)  # every attribution option, before the model is looked at
    if args.model is not None:
        problem = model_problem(args.model)  # a hub model missing from the cache: at once, before loading
        if problem:
            raise ConfigError(f"--model {args.model}: {problem}")
    metrics = run(args)
    for warning in metrics["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_text(metrics, with_warnings=False))  # the warnings went to stderr
    keys = ("n_edges", "n_nodes", "faithfulness", "kl_recovered_pct", "model_accuracy", "circuit_accuracy")
    keys = tuple(k for k in keys if k in metrics)
    print(" ".join(f"{k}={_fmt(metrics.get(k))}" for k in keys) + f" -> {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Check, read, run the pipeline, write; returns the metrics written to ``metrics.json``."""
    # heavy (torch, the engine, the data and model libraries) and needed only here: imported on this path, so
    # that --help and a refused option or missing hub model answer at once
    import torch

    from circuitft.commands.circuit_inputs import (
        analysis_model,
        ckpt_model_spec,
        heldout_rows,
        load_tokenizer,
        resolve_device,
        task_name,
    )
    from circuitft.commands.circuit_plan import start_line
    from circuitft.data.pairs import default_prepend_bos, tokenize_pairs
    from circuitft.data.sources import load_rows
    from circuitft.eap.graph import Graph
    from circuitft.eap.heldout import disjoint_rows
    from circuitft.eap.io import check_compatible, write_json, write_safetensors
    from circuitft.eap.metrics import validate_pairs
    from circuitft.eap.mib import write_mib
    from circuitft.eap.pipeline import find_circuit

    start = time.perf_counter()
    settings = settings_of(args)
    saved = _check_inputs(args, settings)
    device = resolve_device(args.device)

    # ---- data: rows and tokenization (before loading model weights) ------------------------------
    rows = load_rows(args.data, limit=args.limit)
    spec = args.model or ckpt_model_spec(args.ckpt)
    tokenizer = load_tokenizer(spec)
    task = args.task or task_name(args.data)
    pairs = tokenize_pairs(rows, tokenizer, task, args.prepend_bos, args.on_mismatch, source=str(args.data))
    validate_pairs(pairs, settings.metric)
    prepend_bos = args.prepend_bos if args.prepend_bos is not None else default_prepend_bos(tokenizer)
    print(
        f"{args.data}: {len(rows)} rows, {pairs.n_dropped} dropped for clean/corrupted token-length "
        f"mismatch, {pairs.n_identical} for identical clean/corrupted tokens, {len(pairs)} used",
        file=sys.stderr,
    )
    pairs, heldout = heldout_rows(args, pairs, tokenizer, task, disjoint_rows)

    # ---- model, then the pipeline: attribute, select, evaluate, summarise -------------------------
    model = analysis_model(args, spec).to(device)
    cfg = Graph.from_model(model).cfg
    check_selection(cfg.n_edges, **settings.sizes)
    if saved is not None:
        check_compatible(saved, cfg, where=f"--graph {args.graph}")
    if not args.quiet:  # what it will run and roughly how long
        print(
            start_line(model, cfg.n_edges, pairs, settings, args.graph, device), file=sys.stderr, flush=True
        )
    torch.manual_seed(settings.seed)
    found = find_circuit(
        model,
        pairs,
        settings,
        heldout=heldout if heldout is not None else pairs.subset([]),
        saved=saved,
        progress=not args.quiet,
    )
    if found.note is not None:  # a graph too small for the top 5%
        print(f"note: {found.note}", file=sys.stderr)
    graph, metrics = found.graph, found.metrics
    graph.meta.update(
        seed=settings.seed,
        data=str(args.data),
        model_spec=spec,
        adapter=_str(args.adapter),
        ckpt=_str(args.ckpt),
        prepend_bos=prepend_bos,
        n_dropped=pairs.n_dropped,
    )
    metrics.update(
        graph=_str(args.graph),
        task=task,
        model=spec,
        adapter=_str(args.adapter),
        ckpt=_str(args.ckpt),
        data=str(args.data),
        prepend_bos=prepend_bos,
        device=str(device),
        seconds=round(time.perf_counter() - start, 3),
        seconds_baseline_and_curve=round(found.seconds_references, 3),
    )
    add_readings(metrics)

    # ---- write everything to a temporary folder, then move it into --out ---------------------------
    def write(folder: Path) -> None:
        mark(folder, "circuit")
        write_json(graph, folder / "graph.json")
        write_safetensors(graph, folder / "graph.safetensors")
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if args.mib:
            write_mib(graph, folder / "mib", task, spec.replace("/", "-").replace(":", "-"))

    atomic_folder(write, args.out, option="--out")
    return metrics


def _check_inputs(args: argparse.Namespace, settings: CircuitSettings) -> Any:
    """The checks that need no model: options, files, the output folder; returns the ``--graph`` file's graph
    (a corrupt or malformed file fails here, before any model work)."""
    saved = None
    if args.graph is not None:
        if settings.method is not None:
            raise ConfigError(
                "give either --method (attribute) or --graph FILE (evaluate a saved graph), not both"
            )
        if not args.graph.is_file():
            raise ConfigError(f"--graph {args.graph}: file not found")
        from circuitft.eap.io import load_graph  # the engine's file reader: only with --graph

        saved = load_graph(args.graph)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be positive, got {args.limit}")
    only_one(args, ("heldout_data", "heldout_frac"))
    if args.model is None and args.ckpt is None:
        args.model = DEFAULT_MODEL
    if args.adapter is not None and not (args.adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter {args.adapter}: not a peft adapter folder (no adapter_config.json)")
    if args.ckpt is not None and not args.ckpt.is_file():
        raise ConfigError(f"--ckpt {args.ckpt}: file not found")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    check_owned(args.out, "circuit", "--out", what="write into")  # never overwrite the user's own files
    check_writable(args.out, "--out")  # before the model is loaded, not after the whole attribution
    return saved


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["build_parser", "main", "run", "settings_of"]
