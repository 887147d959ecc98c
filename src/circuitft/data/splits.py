"""Train / val / test splits by construction: a problem's split is a stable hash of its clean prompt.

The split of a clean prompt is fixed by the first 8 bytes of its SHA-256 (not Python's ``hash()``, which
changes between processes), read as a number in [0, 1) and compared with the cumulative proportions
(default 80/10/10). It depends on nothing but the prompt text, so no problem can appear in two splits,
whatever number of rows or seed is asked for, and built-in tasks and user files split the same prompt the
same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from circuitft.errors import DataError

SPLITS = ("train", "val", "test")
PROPORTIONS = (0.8, 0.1, 0.1)


def split_of(clean: str) -> str:
    """``"train"``, ``"val"`` or ``"test"``: the split of the problem whose clean prompt is ``clean``."""
    u = int.from_bytes(hashlib.sha256(clean.encode("utf-8")).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in zip(SPLITS, PROPORTIONS, strict=True):
        edge += share
        if u < edge:
            return name
    return SPLITS[-1]


def check_split(split: str, where: str = "split") -> str:
    """``split`` if it is one of train/val/test, else a :class:`DataError`."""
    if split not in SPLITS:
        raise DataError(f"{where} must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def split_counts(prompts: Iterable[str]) -> dict[str, int]:
    """Number of distinct prompts of ``prompts`` in each split."""
    counts = dict.fromkeys(SPLITS, 0)
    for p in set(prompts):
        counts[split_of(p)] += 1
    return counts
