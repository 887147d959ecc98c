"""Seeded training batches of one stage (one task or a mix of tasks) and the sampler that serves them.

Batch ``k`` of a stage on one rank is a pure function of (the tasks' seeds, ``k``, rank, world size), so a
resumed run sees exactly the batches of an uninterrupted one. A mixed stage gives every task a fixed share
of each batch (largest remainder of ``batch_size * weight``); each task's rows come from its own seeded
per-pass permutations of its training rows, so the rows of the tasks are interleaved with the seed.
The sampler is ours (the Trainer is configured with ``use_distributed_sampler=False``): ranks are
handled here, not by a DistributedSampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from circuitft.data.pairs import PromptPairs, concat_pairs
from circuitft.errors import ConfigError


def shares(batch_size: int, weights: Sequence[float]) -> list[int]:
    """Rows of each part in a batch of ``batch_size``: largest remainder of ``batch_size * w / sum(w)``."""
    total = float(sum(weights))
    exact = [batch_size * w / total for w in weights]
    out = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (out[i] - exact[i], i))
    for i in order[: batch_size - sum(out)]:
        out[i] += 1
    if len(weights) > 1 and 0 in out:
        raise ConfigError(
            f"a batch of {batch_size} rows cannot hold every task of a mixed stage with weights "
            f"{list(weights)}: raise data.batch_size or even out the weights"
        )
    return out


class StageBatches(Dataset):
    """Batch ``k`` of one stage on one rank (see module docstring).

    Items are ``{"task_idx": stage index, "batch": PairBatch}`` (the stage index: training batches of a
    mixed stage hold several tasks).
    """

    def __init__(
        self,
        parts: Sequence[PromptPairs],
        seeds: Sequence[int],
        weights: Sequence[float],
        stage_idx: int,
        batch_size: int,
        rank: int,
        world: int,
    ) -> None:
        self.parts, self.seeds, self.stage_idx = list(parts), list(seeds), stage_idx
        self.rank, self.world = rank, world
        self.counts = shares(batch_size, weights)
        self.offsets = [sum(len(p) for p in self.parts[:j]) for j in range(len(self.parts))]
        self.pairs = self.parts[0] if len(self.parts) == 1 else concat_pairs(self.parts, self.parts[0].task)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def _perm(self, j: int, p: int) -> torch.Tensor:
        if (j, p) not in self._perms:
            g = torch.Generator().manual_seed(self.seeds[j] * 1_000_003 + p)
            self._perms[j, p] = torch.randperm(len(self.parts[j]), generator=g)
        return self._perms[j, p]

    def rows(self, k: int) -> list[int]:
        """Row indices (into :attr:`pairs`) of local batch ``k`` (global batch ``k * world + rank``)."""
        out: list[int] = []
        g = k * self.world + self.rank
        for j, (count, part) in enumerate(zip(self.counts, self.parts, strict=True)):
            n, start = len(part), g * count
            out += [self.offsets[j] + int(self._perm(j, i // n)[i % n]) for i in range(start, start + count)]
        return out

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict[str, Any]:
        return {"task_idx": self.stage_idx, "batch": self.pairs.batch(self.rows(k))}


class ListDataset(Dataset):
    """A list of prepared items (evaluation batches)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class RangeSampler(Sampler[int]):
    """Yields ``start..total-1`` but reports ``total`` as its length (Lightning counts the batches already
    done in a resumed epoch). Needs ``Trainer(use_distributed_sampler=False)`` under DDP: ranks are
    handled by the datasets."""

    def __init__(self, start: int, total: int) -> None:
        self.start, self.total = start, total

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.total))

    def __len__(self) -> int:
        return self.total
