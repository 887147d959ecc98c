"""``circuitft tasks check FILE --model SPEC``: will these rows work with this model?

1. every row loads and its clean and corrupted prompts have the same token length (else one error line);
2. answers that join their prompt differently than in running text (:mod:`circuitft.data.check`), e.g. a
   missing leading space: counted, the first few shown, with the likely fix;
3. unless ``--tokenizer_only``: the model's greedy accuracy on the rows (as ``circuitft circuit`` scores
   ``model_accuracy``), the first few misses with every expected
   answer token and the model's greedy token at each position (teacher-forced), and a warning below
   20% (:func:`circuitft.eap.summary.low_accuracy_warning`).

Findings are warnings (stderr); the exit status is 0 unless the file cannot be used at all.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from circuitft.data.check import glue_problems
from circuitft.data.pairs import tokenize_pairs
from circuitft.data.sources import load_rows, task_name
from circuitft.dtypes import parse_device
from circuitft.eap.accuracy import model_accuracy
from circuitft.eap.summary import low_accuracy_warning
from circuitft.errors import ConfigError
from circuitft.models.frozen import load_analysis_model
from circuitft.models.loading import load_tokenizer

SHOWN = 5  # rows shown per kind of finding


def check(args: argparse.Namespace) -> int:
    """Run the check described in the module docstring; returns the exit status."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch_size must be positive, got {args.batch_size}")
    device = (
        None if args.tokenizer_only else parse_device(args.device)
    )  # a bad --device fails before any output
    rows = load_rows(args.file)  # a missing or bad file fails before the model's tokenizer loads
    tokenizer = load_tokenizer(args.model)
    task = task_name(args.file)
    bos = False if args.no_bos else None
    pairs = tokenize_pairs(rows, tokenizer, task, bos, on_mismatch="error", source=str(args.file))
    glue = glue_problems(rows, tokenizer)
    status = "OK" if not glue else "load"
    skipped = (
        f"; {pairs.n_identical} rows skipped: identical clean/corrupted tokens" if pairs.n_identical else ""
    )
    print(
        f"{args.file}: {len(pairs)} rows {status} for {args.model} (clean and corrupted prompts of equal token "
        f"length; longest sequence {pairs.max_len} tokens{skipped})"
    )
    if glue:
        n_rows = len({p.row for p in glue})
        print(
            f"warning: {n_rows} of {len(pairs)} rows have an answer whose tokens after the prompt differ from "
            f"running text (the model is taught and scored on tokens it would not produce):",
            file=sys.stderr,
        )
        for p in glue[:SHOWN]:
            print(f"  {p.describe()}", file=sys.stderr)
        if len(glue) > SHOWN:
            print(f"  ... and {len(glue) - SHOWN} more", file=sys.stderr)
    if args.tokenizer_only:
        return 0
    number = {id(row): n for n, row in enumerate(rows, start=1)}  # data row of each kept row
    _accuracy(args, device, pairs, tokenizer, [number[id(row)] for row in pairs.rows], task)
    return 0


def _accuracy(
    args: argparse.Namespace, device: Any, pairs: Any, tokenizer: Any, row_numbers: list[int], task: str
) -> None:
    model = load_analysis_model(args.model).model.to(device)
    result = model_accuracy(model, pairs, batch_size=args.batch_size)
    hits = int(result.correct.sum())
    n = len(result.correct)
    print(f"model accuracy: {args.model} answers {hits} of {n} rows correctly ({100 * hits / n:.0f}%, greedy, "
          "every answer token)")  # fmt: skip
    misses = (~result.correct).nonzero().flatten().tolist()
    for i in misses[:SHOWN]:
        expected = pairs.answer_ids[i, : int(pairs.answer_len[i])].tolist()
        predicted = result.predictions[i] if result.predictions is not None else []
        print(f"  row {row_numbers[i]}: {miss_text(tokenizer, pairs.rows[i].answer, expected, predicted)}")
    if len(misses) > SHOWN:
        print(f"  ... and {len(misses) - SHOWN} more rows answered wrongly")
    warning = low_accuracy_warning(result.accuracy, task)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def miss_text(tokenizer: Any, answer: str, expected: list[int], predicted: list[int]) -> str:
    """One miss: the answer's tokens and the model's greedy token at each of their positions (teacher-forced:
    each predicted after the right tokens before it), naming the first that differs."""
    want = [tokenizer.decode([t]) for t in expected]
    got = [tokenizer.decode([t]) for t in predicted]
    k = next((j for j, (a, b) in enumerate(zip(expected, predicted, strict=False)) if a != b), 0)
    tokens = f"expected tokens {want}, predicted {got}"
    if k == 0:
        first = got[0] if got else ""
        return f"answer {answer!r} starts with token {want[0]!r}; the model predicts {first!r} ({tokens})"
    return f"answer {answer!r}: {tokens} (token {k + 1} differs: {want[k]!r} expected, {got[k]!r} predicted)"


__all__ = ["check", "miss_text"]
