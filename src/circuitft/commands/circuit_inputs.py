"""What ``circuitft circuit`` reads before it runs: the device, the model and tokenizer, the task name, and
the discovery and held-out rows (``--heldout_frac`` / ``--heldout_data``).

The model modules are imported where a model is loaded, not at the top: they bring peft and accelerate, which
``circuitft circuit --help`` and ``circuitft tasks check`` do not need.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.sources import load_rows
from circuitft.eap.heldout import hold_out
from circuitft.errors import ConfigError


def heldout_rows(
    args: argparse.Namespace, pairs: PromptPairs, tokenizer: Any, task: str, disjoint: Any
) -> tuple[PromptPairs, PromptPairs | None]:
    """(discovery rows, held-out rows or None) from ``--heldout_frac`` (the last share of ``--data``) or
    ``--heldout_data`` (without rows whose clean prompt is a discovery row); one line on stderr each."""
    if args.heldout_frac is not None:
        try:
            discovery, heldout = hold_out(pairs, args.heldout_frac)
        except ValueError as err:
            raise ConfigError(f"--heldout_frac {args.heldout_frac}: {err}") from None
        n_held = len(pairs) - len(discovery)
        print(
            f"held out: the last {n_held} of {len(pairs)} rows ({n_held - len(heldout)} of them dropped: their "
            f"clean prompt is also a discovery row); the circuit is found on {len(discovery)}",
            file=sys.stderr,
        )
        return discovery, heldout
    if args.heldout_data is None:
        return pairs, None
    rows = load_rows(args.heldout_data)
    heldout = tokenize_pairs(
        rows, tokenizer, task, args.prepend_bos, args.on_mismatch, source=args.heldout_data
    )
    heldout, dropped = disjoint(pairs, heldout)
    print(
        f"{args.heldout_data}: {len(heldout)} held-out rows ({dropped} dropped: their clean prompt is in "
        f"{args.data}; {heldout.n_dropped} for token-length mismatch)",
        file=sys.stderr,
    )
    if not len(heldout):
        raise ConfigError(f"--heldout_data {args.heldout_data}: no usable row outside --data {args.data}")
    return pairs, heldout


def ckpt_model_spec(path: Path) -> str:
    """The model spec a circuitft checkpoint names (its hyper-parameters)."""
    from circuitft.models.checkpoint import load_checkpoint_file

    hp = load_checkpoint_file(path).get("hyper_parameters") or {}
    if "model" not in hp:
        raise ConfigError(f"--ckpt {path}: not a circuitft checkpoint (no model in its hyper-parameters)")
    return str(hp["model"])


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of model ``spec``."""
    from circuitft.models.loading import load_tokenizer as load

    return load(spec)


def analysis_model(args: argparse.Namespace, spec: str) -> Any:
    """The merged, frozen float32 model: base + ``--adapter`` or the ``--ckpt`` adapter."""
    from circuitft.models.frozen import load_analysis_model

    model = args.model if args.ckpt is not None else spec
    return load_analysis_model(
        model, adapter=args.adapter, checkpoint=args.ckpt, progress=not args.quiet
    ).model


def task_name(data: str) -> str:
    """The task name recorded for ``--data``: ``hf:NAME``'s name, else the file's stem."""
    return data.split(":", 1)[1] if data.startswith("hf:") else Path(data).stem
