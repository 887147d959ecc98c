"""The run of ``circuitft circuit``: check the inputs, read and tokenize the rows, load the model, call the
circuit pipeline (:func:`circuitft.eap.pipeline.find_circuit`) and write the output folder.

Kept apart from :mod:`circuitft.commands.circuit` (the options) because it imports torch, the engine and the
model libraries: ``circuitft circuit --help`` and a refused option answer without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from circuitft.commands.args import only_one
from circuitft.commands.circuit_inputs import (
    analysis_model,
    ckpt_model_spec,
    heldout_rows,
    load_tokenizer,
    task_name,
)
from circuitft.commands.circuit_plan import start_line
from circuitft.data.pairs import default_prepend_bos, tokenize_pairs
from circuitft.data.sources import load_rows
from circuitft.dtypes import parse_device
from circuitft.eap import io as graph_io  # called through the module: tests replace its writers
from circuitft.eap.graph import Graph
from circuitft.eap.heldout import disjoint_rows
from circuitft.eap.metrics import validate_pairs
from circuitft.eap.mib import write_mib
from circuitft.eap.pipeline import find_circuit
from circuitft.eap.settings import CircuitSettings, check_selection
from circuitft.eap.summary import add_readings
from circuitft.errors import ConfigError
from circuitft.files import atomic_folder
from circuitft.models import DEFAULT_MODEL
from circuitft.outputs import check_writable
from circuitft.owned import check_owned, mark


def run(args: argparse.Namespace, settings: CircuitSettings) -> dict[str, Any]:
    """Check, read, run the pipeline, write; returns the metrics written to ``metrics.json``."""
    start = time.perf_counter()
    saved = _check_inputs(args, settings)
    device = parse_device(args.device)

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
        graph_io.check_compatible(saved, cfg, where=f"--graph {args.graph}")
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
        graph_io.write_json(graph, folder / "graph.json")
        graph_io.write_safetensors(graph, folder / "graph.safetensors")
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
        saved = graph_io.load_graph(args.graph)
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
