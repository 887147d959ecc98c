"""``circuitft circuit``: score every edge of one model with EAP(-IG), select a circuit, evaluate it.

    circuitft circuit [--model SPEC] [--adapter DIR | --ckpt FILE] --data FILE --method M [--ig_steps N]
        [--metric kl] [--batch_size B] [--prepend_bos true|false] [--top_n N | --top_frac F | ...]
        [--seed S] --out DIR

Options may also come from ``--config FILE`` (YAML, as ``--print_config`` writes it; options given after it
override it). Writes ``DIR/graph.json`` (every edge with its score; ``in_graph`` marks the circuit, the reference
library's format), ``DIR/graph.safetensors`` (the same, compact) and ``DIR/metrics.json`` (faithfulness,
accuracies, sizes, a random baseline, a size curve and the smallest circuit reaching 0.8, settings, seconds,
``warnings``, one-sentence ``definitions`` and a plain-language ``summary``, also printed). Every option, the data file and its tokenization are checked before
the model is run; the outputs are written to a temporary folder and moved into ``DIR`` at the end, so a
failed run leaves nothing under ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitft.commands.args import flag, make_parser, only_one, parse
from circuitft.commands.circuit_inputs import (
    _analysis_model,
    _ckpt_model_spec,
    _device,
    _heldout_rows,
    _task_name,
    _tokenizer,
)
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.errors import ConfigError
from circuitft.files import atomic_folder
from circuitft.limits import MAX_BATCH_SIZE, MAX_IG_STEPS, check_count
from circuitft.models import DEFAULT_MODEL
from circuitft.outputs import check_writable
from circuitft.owned import check_owned, mark

SIZE_OPTIONS = ("top_n", "top_frac", "threshold", "greedy_n")


def build_parser(prog: str = "circuitft circuit") -> Any:
    """The command's argument parser (jsonargparse: ``--config FILE``, ``--print_config``)."""
    from typing import Literal

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
        "--method",
        type=str | None,
        default=None,
        help="attribution method: EAP-IG-inputs (null: this one), EAP, EAP-IG-activations, clean-corrupted, exact",
    )
    p.add_argument(
        "--graph",
        type=Path | None,
        default=None,
        help="evaluate a saved graph (graph.json, reference format, or .safetensors) instead of attributing; "
        "its circuit is used unless a size option (--top_n, ...) reselects from its scores",
    )
    p.add_argument("--ig_steps", type=int, default=5, help="integrated-gradient steps")
    p.add_argument("--metric", type=str, default="kl", help="task metric: kl, logit_diff, prob_diff, logprob")
    p.add_argument(
        "--accuracy",
        type=Literal["exact_match", "first_token"],
        default="exact_match",
        help="model/circuit accuracy: every answer token (exact_match) or the first one only (the prior work's)",
    )
    p.add_argument("--batch_size", type=int, default=8, help="examples per batch")
    p.add_argument(
        "--dtype",
        type=str | None,
        default=None,
        help="attribution buffers: float32 (null: this one) or bfloat16 (half the memory)",
    )
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
        "--top_n",
        type=int | None,
        default=None,
        help="keep the N best edges by |score| (before pruning); one size option at most",
    )
    p.add_argument(
        "--top_frac",
        type=float | None,
        default=None,
        help=f"keep this fraction of edges ({DEFAULT_TOP_FRAC} when no size option is given)",
    )
    p.add_argument("--threshold", type=float | None, default=None, help="keep edges with |score| >= T")
    p.add_argument(
        "--greedy_n", type=int | None, default=None, help="greedy selection of N edges from the logits up"
    )
    p.add_argument(
        "--baseline_samples",
        type=int,
        default=3,
        help="random circuits of the same size evaluated as a baseline (0: none)",
    )
    p.add_argument(
        "--size_curve",
        type=str,
        default="auto",
        help="faithfulness at several circuit sizes (0.5% ... 50% of the edges), for the smallest circuit "
        "reaching 0.8: auto (only the sizes on the side of the circuit that decides it), true (all), false, "
        "mib (MIB's fractions 0.1% ... 100%, for cpr and cmd) or fractions such as 0.01,0.05,0.1",
    )
    p.add_argument(
        "--heldout_data",
        type=str | None,
        default=None,
        help="rows to also score the circuit on, not used to find it (*_heldout in metrics.json; rows whose "
        "clean prompt is in --data are dropped)",
    )
    p.add_argument(
        "--heldout_frac",
        type=float | None,
        default=None,
        help="hold out this share of the --data rows (the last ones): the circuit is found on the others and "
        "also scored on these (not with --heldout_data)",
    )
    p.add_argument(
        "--mib",
        **flag(
            "also write the circuits at MIB's edge fractions (0.1% ... 50%) and the edge scores as "
            "DIR/mib/<task>_<model>/, the layout MIB's circuit-track evaluation reads; the size curve then "
            "holds MIB's fractions (for cpr and cmd)"
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (also seeds the random circuits)")
    p.add_argument(
        "--device", type=str, default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", **flag("no progress bars"))
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft circuit``; returns the exit status (user errors raise CircuitftError)."""
    parser = build_parser(f"circuitft {name}")
    args = parse(parser, argv)
    if isinstance(args, int):  # --help, --print_config
        return args
    only_one(args, ("adapter", "ckpt"))
    only_one(args, SIZE_OPTIONS)
    if args.model is not None:
        from circuitft.preflight import model_problem

        problem = model_problem(args.model)  # a hub model missing from the cache: at once, before imports
        if problem:
            raise ConfigError(f"--model {args.model}: {problem}")
    from circuitft.eap.summary import summary_text

    metrics = run(args)
    for warning in metrics["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_text(metrics, with_warnings=False))  # the warnings went to stderr
    keys = ("n_edges", "n_nodes", "faithfulness", "kl_recovered_pct", "model_accuracy", "circuit_accuracy")
    keys = tuple(k for k in keys if k in metrics)
    print(" ".join(f"{k}={_fmt(metrics.get(k))}" for k in keys) + f" -> {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Validate, attribute, select, evaluate, write; returns the metrics written to ``metrics.json``."""
    import torch

    from circuitft.eap.attribute import BUFFER_DTYPES, attribute, check_method
    from circuitft.eap.baseline import (
        evaluate_references,
        one_sided,
        parse_size_curve,
        selection_option,
        selection_size,
    )
    from circuitft.eap.evaluate import evaluate, faithfulness
    from circuitft.eap.graph import Graph
    from circuitft.eap.heldout import disjoint_rows, evaluate_heldout
    from circuitft.eap.io import write_json, write_safetensors
    from circuitft.eap.metrics import check_metric, validate_pairs
    from circuitft.eap.mib import MIB_FRACTIONS, at_fractions, mib_areas, write_mib
    from circuitft.eap.select import check_selection, select, select_default
    from circuitft.eap.summary import add_readings, smallest_reaching

    start = time.perf_counter()
    # ---- cheap checks: options, files ------------------------------------------------------------
    saved = None
    if args.graph is not None:
        from circuitft.eap.io import load_graph

        if args.method is not None:
            raise ConfigError(
                "give either --method (attribute) or --graph FILE (evaluate a saved graph), not both"
            )
        if not args.graph.is_file():
            raise ConfigError(f"--graph {args.graph}: file not found")
        saved = load_graph(args.graph)  # a corrupt or malformed file fails here, before any model work
    else:
        args.method = check_method(args.method or "EAP-IG-inputs")
    check_metric(args.metric)
    if args.ig_steps < 1:
        raise ConfigError(f"--ig_steps must be at least 1, got {args.ig_steps}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {args.batch_size}")
    check_count(args.ig_steps, "--ig_steps", MAX_IG_STEPS)
    check_count(args.batch_size, "--batch_size", MAX_BATCH_SIZE)
    if args.dtype is not None and args.dtype not in BUFFER_DTYPES:
        raise ConfigError(f"--dtype {args.dtype!r} is not one of {', '.join(BUFFER_DTYPES)}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be positive, got {args.limit}")
    if args.baseline_samples < 0:
        raise ConfigError(f"--baseline_samples must be 0 (no baseline) or more, got {args.baseline_samples}")
    if args.mib and str(args.size_curve).strip().lower() == "auto":
        args.size_curve = "mib"
    mib_curve = str(args.size_curve).strip().lower() == "mib"
    curve_sizes = MIB_FRACTIONS if mib_curve else parse_size_curve(args.size_curve)
    only_one(args, ("heldout_data", "heldout_frac"))
    if args.heldout_frac is not None and not 0 < args.heldout_frac < 1:
        raise ConfigError(
            f"--heldout_frac must be between 0 and 1 (a share of the rows), got {args.heldout_frac}"
        )
    sizes = {k: getattr(args, k) for k in ("top_n", "top_frac", "threshold", "greedy_n")}
    resize = any(v is not None for v in sizes.values())
    if not resize:
        sizes["top_frac"] = DEFAULT_TOP_FRAC
    check_selection(None, **sizes)
    if args.threshold is not None and args.threshold < 0:
        raise ConfigError(
            f"--threshold must be >= 0 (edges with |score| >= T are kept), got {args.threshold}"
        )
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
    device = _device(args.device)

    # ---- data: rows and tokenization (before loading model weights) ------------------------------
    from circuitft.data.pairs import default_prepend_bos, tokenize_pairs
    from circuitft.data.sources import load_rows

    rows = load_rows(args.data, limit=args.limit)
    spec = args.model or _ckpt_model_spec(args.ckpt)
    tokenizer = _tokenizer(spec)
    task = args.task or _task_name(args.data)
    pairs = tokenize_pairs(rows, tokenizer, task, args.prepend_bos, args.on_mismatch, source=str(args.data))
    validate_pairs(pairs, args.metric)
    prepend_bos = args.prepend_bos if args.prepend_bos is not None else default_prepend_bos(tokenizer)
    print(
        f"{args.data}: {len(rows)} rows, {pairs.n_dropped} dropped for clean/corrupted token-length "
        f"mismatch, {pairs.n_identical} for identical clean/corrupted tokens, {len(pairs)} used",
        file=sys.stderr,
    )
    pairs, heldout = _heldout_rows(args, pairs, tokenizer, task, disjoint_rows)

    # ---- model -----------------------------------------------------------------------------------
    model = _analysis_model(args, spec).to(device)
    graph = Graph.from_model(model)
    check_selection(graph.n_edges, **sizes)
    if not args.quiet:  # what it will run and roughly how long
        from circuitft.commands.circuit_plan import start_line

        plan = (model, graph.n_edges, pairs, args, len(curve_sizes), one_sided(args.size_curve), device)
        print(start_line(*plan), file=sys.stderr, flush=True)

    # ---- attribute, select, evaluate ---------------------------------------------------------------
    torch.manual_seed(args.seed)
    if saved is not None:
        from circuitft.eap.io import check_compatible

        check_compatible(saved, graph.cfg, where=f"--graph {args.graph}")
        graph = saved
        if resize:
            select(graph, **sizes)
        else:  # the file's circuit as it is (an empty one stays empty); its nodes follow from its edges
            from circuitft.eap.select import _nodes_with_in_and_out

            graph.in_graph &= graph.cfg.real_edge_mask
            graph.nodes_in_graph = _nodes_with_in_and_out(graph.cfg, graph.in_graph)
    else:
        graph = attribute(
            model,
            graph,
            pairs,
            method=args.method,
            metric=args.metric,
            ig_steps=args.ig_steps,
            batch_size=args.batch_size,
            progress=not args.quiet,
            dtype=args.dtype,
        )
        if resize:
            select(graph, **sizes)
        elif (note := select_default(graph)) is not None:  # a graph too small for the top 5%
            print(f"note: {note}", file=sys.stderr)
            sizes = {"top_n": graph.meta["selection"]["value"]}
    result = evaluate(
        model,
        graph,
        pairs,
        metric=args.metric,
        batch_size=args.batch_size,
        progress=not args.quiet,
        dtype=args.dtype,
        accuracy=args.accuracy,
    )
    scores = faithfulness(result)
    held = evaluate_heldout(
        model,
        graph,
        heldout,
        metric=args.metric,
        batch_size=args.batch_size,
        dtype=args.dtype,
        accuracy=args.accuracy,
        progress=not args.quiet,
    )
    t_refs = time.perf_counter()
    chosen = selection_option(graph, sizes if saved is None or resize else None)
    baseline, curve = evaluate_references(
        model,
        graph,
        pairs,
        n_requested=selection_size(graph, dict([chosen]) if chosen else None),
        n_random=args.baseline_samples,
        sizes=curve_sizes,
        seed=args.seed,
        metric=args.metric,
        batch_size=args.batch_size,
        dtype=args.dtype,
        accuracy=args.accuracy,
        main=result,
        one_side=one_sided(args.size_curve) and chosen is not None and chosen[0] in ("top_n", "top_frac"),
        progress=not args.quiet,
    )
    seconds_refs = time.perf_counter() - t_refs
    seconds = time.perf_counter() - start
    graph.meta.update(
        seed=args.seed,
        data=str(args.data),
        model_spec=spec,
        adapter=_str(args.adapter),
        ckpt=_str(args.ckpt),
        prepend_bos=prepend_bos,
        n_dropped=pairs.n_dropped,
    )
    metrics: dict[str, Any] = {
        **{k: _plain(v) for k, v in scores.items()},
        "n_edges": graph.count_edges(),
        "n_nodes": graph.count_nodes(),
        "n_edges_total": graph.n_edges,
        "selection": graph.meta.get("selection"),
        "method": args.method or graph.meta.get("method"),
        "graph": _str(args.graph),
        "metric": args.metric,
        "accuracy": args.accuracy,
        "ig_steps": graph.meta.get("ig_steps")
        if saved is not None
        else (args.ig_steps if "IG" in args.method else None),
        "step_convention": graph.meta.get("step_convention"),
        "kl_reduction": graph.meta.get("kl_reduction"),
        "n_examples": len(pairs),
        **{k: _plain(v) for k, v in held.items() if k != "n_examples_heldout"},
        "n_examples_heldout": int(held["n_examples_heldout"]),
        "n_dropped": pairs.n_dropped,
        "n_identical": pairs.n_identical,
        "task": task,
        "model": spec,
        "adapter": _str(args.adapter),
        "ckpt": _str(args.ckpt),
        "data": str(args.data),
        "seed": args.seed,
        "dtype": args.dtype or "float32",
        "prepend_bos": prepend_bos,
        "device": str(device),
        "seconds": round(seconds, 3),
    }
    if baseline is not None:
        metrics["random_baseline"] = baseline
    if curve is not None:
        metrics.update(size_curve=curve, smallest_80pct=smallest_reaching(curve))
        points = {p["frac"]: p["faithfulness"] for p in curve if not p.get("main")}
        areas = mib_areas(at_fractions(points, graph.n_edges))
        metrics.update({k: _plain(v) for k, v in areas.items()})
    metrics["seconds_baseline_and_curve"] = round(seconds_refs, 3)
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


# ---- helpers --------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-safe scalar: tensors to Python numbers, NaN/inf to None (strict JSON has neither)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value + 0.0 if isinstance(value, float) else value  # -0.0 -> 0.0


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["build_parser", "main", "run"]
