"""The processes of a run working on one circuit analysis together (DDP), and failing together.

Every rank takes a contiguous block of each task's analysis examples (:meth:`Ranks.shard`), works on it, and
swaps its part with the others in :meth:`Ranks.gather`. Each gather also carries an error flag: when the
work of any rank raised, every rank raises the same :class:`AnalysisFailed` right after the gather, so no
rank is left waiting at a collective for one that gave up. Without a process group (one process) nothing
is exchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

from circuitft.data.pairs import PromptPairs
from circuitft.diskfull import DiskFull, is_out_of_space

T = TypeVar("T")


_DISK_FULL = "disk full: "  # marks an out-of-space error in the exchanged status (fatal, not recorded)


class AnalysisFailed(RuntimeError):
    """An analysis step failed on some rank; ``task`` is the task it was working on (or ``*``)."""

    def __init__(self, task: str, message: str) -> None:
        super().__init__(f"{task}: {message}")
        self.task, self.message = task, message


class Ranks:
    """This process's rank and the world size of the current process group (0 and 1 without one)."""

    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def block(self, n: int) -> range:
        """This rank's contiguous share of ``range(n)`` (sizes differ by at most one; may be empty)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def shard(self, pairs: PromptPairs) -> PromptPairs:
        """This rank's rows of ``pairs`` (row order kept, so the concatenation over ranks is ``pairs``)."""
        return pairs if not self.active else pairs.subset(self.block(len(pairs)))

    def gather(self, task: str, work: Callable[[], T]) -> list[T]:
        """Run ``work`` here, then return every rank's result in rank order.

        If ``work`` raised on any rank, every rank raises :class:`AnalysisFailed` with the first failing
        rank's message (naming the rank when there are several).
        """
        mine = self._attempt(work)
        parts = self._exchange(mine)
        self._raise_first(task, [ok_msg for ok_msg, _ in parts])
        return [value for _, value in parts]

    def together(self, task: str, work: Callable[[], T]) -> T:
        """Run ``work`` here and return its result; only whether it failed is exchanged (as :meth:`gather`)."""
        status, value = self._attempt(work)
        self._raise_first(task, [s for s, _ in self._exchange((status, None))])
        return value  # type: ignore[return-value]

    def _attempt(self, work: Callable[[], T]) -> tuple[str | None, T | None]:
        try:
            return None, work()
        except AnalysisFailed as err:
            return err.message, None
        except Exception as err:  # noqa: BLE001 - any failure of an analysis is reported, then re-raised
            if is_out_of_space(err):  # a full disk stops the run (checkpoints would fail next), on every rank
                if not self.active:
                    raise
                return f"{_DISK_FULL}{err}", None
            first = (str(err).strip().splitlines() or [""])[0][:300]
            return (f"{type(err).__name__}: {first}" if first else type(err).__name__), None

    def _exchange(self, mine: tuple[str | None, Any]) -> list[tuple[str | None, Any]]:
        if not self.active:
            return [mine]
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        return parts

    def _raise_first(self, task: str, errors: list[str | None]) -> None:
        for message in errors:
            if message is not None and message.startswith(_DISK_FULL):
                raise DiskFull(message[len(_DISK_FULL) :])
        for rank, message in enumerate(errors):
            if message is not None:
                raise AnalysisFailed(task, f"{message} (rank {rank})" if self.active else message)
