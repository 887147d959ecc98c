"""The forward-pass toolkit shared by attribution and evaluation.

Analysis mode (eval, no parameter gradients), the buffers' dtype, the model's device, logits at the answer
positions only (:func:`kept_logits`), rows batched by length (:func:`length_batches`) and the index of a
batch stacked k times (:func:`repeated_index`). Neither :mod:`circuitft.eap.attribute` nor
:mod:`circuitft.eap.evaluate` depends on the other: both build on this module.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from circuitft.data.pairs import PairBatch, PromptPairs
from circuitft.dtypes import DTYPES
from circuitft.eap.metrics import AnswerIndex
from circuitft.errors import ConfigError


@contextlib.contextmanager
def analysis_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; the previous state is restored afterwards."""
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


BUFFER_DTYPES = DTYPES  # every dtype name works for the buffers


def buffer_dtype(model: torch.nn.Module, dtype: torch.dtype | str | None) -> torch.dtype:
    """dtype of the activation-difference and gradient buffers.

    None: float32 (float64 for a float64 model). ``bfloat16`` halves the buffers' memory; scores are still
    summed in float64, but each difference and gradient carries bfloat16's ~3 significant digits.
    """
    if dtype is None:
        return torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32
    if isinstance(dtype, str):
        if dtype not in BUFFER_DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; valid: {', '.join(BUFFER_DTYPES)}")
        return BUFFER_DTYPES[dtype]
    return dtype


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def kept_logits(model: torch.nn.Module, index: AnswerIndex, **inputs: Any) -> torch.Tensor:
    """[n, V] logits at the answer positions only (``logits_to_keep`` as a boolean mask)."""
    out = model(**inputs, logits_to_keep=index.mask, use_cache=False)
    logits = out.logits
    return logits.reshape(-1, logits.shape[-1])


LONG_ROW_FACTOR = 4.0
_warned_long: set[tuple] = set()


def length_batches(pairs: PromptPairs, batch_size: int) -> Iterator[tuple[torch.Tensor, PairBatch]]:
    """``(rows, batch)`` with rows of similar length batched together (stable sort by length, so padding is
    small); ``rows`` are the input positions of the batch's rows. Warns once per data set when a row is more
    than ``LONG_ROW_FACTOR`` times the median length (its batch pads every row it shares to that length).
    """
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    lengths = pairs.attention_mask.sum(1)
    if len(pairs):
        median, longest = float(lengths.float().median()), int(lengths.argmax())
        if lengths[longest] > LONG_ROW_FACTOR * median:
            key = (pairs.task, len(pairs), int(lengths[longest]), median)
            if key not in _warned_long:
                _warned_long.add(key)
                n_long = int((lengths > LONG_ROW_FACTOR * median).sum())
                warnings.warn(
                    f"task {pairs.task!r}: row {longest + 1} has {int(lengths[longest])} tokens, more than "
                    f"{LONG_ROW_FACTOR:g}x the median {median:g} ({n_long} such rows); rows are batched by "
                    "length, but such rows dominate the time and memory of their batches",
                    stacklevel=3,
                )
    order = torch.sort(lengths, stable=True).indices
    for start in range(0, len(pairs), batch_size):
        rows = order[start : start + batch_size]
        yield rows, pairs.batch(rows)


def repeated_index(index: AnswerIndex, k: int) -> AnswerIndex:
    """The index of ``k`` stacked copies of a batch (rows of copy j follow those of copy j-1)."""
    if k == 1:
        return index
    n = len(index.example)  # kept logits rows per copy
    shift = lambda t, step: None if t is None else torch.cat([t + j * step for j in range(k)])  # noqa: E731
    rep = lambda t: None if t is None else t.repeat(k)  # noqa: E731
    return AnswerIndex(
        index.mask.repeat(k, 1),
        shift(index.example, index.n_examples),
        rep(index.token),
        index.n_examples * k,
        rep(index.answer_len),
        shift(index.diff_row, n),
        rep(index.diff_answer),
        rep(index.diff_wrong),
    )
