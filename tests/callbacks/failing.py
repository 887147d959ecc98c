"""A CircuitCallback whose analysis fails on rank 1 at one step (for the DDP failure-isolation test)."""

from __future__ import annotations

from typing import Any

from circuitft.callbacks import CircuitCallback


class FailOnRankOne(CircuitCallback):
    """Attribution raises on global rank 1 at step ``fail_step`` (every other rank works normally)."""

    def __init__(self, fail_step: int = 6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_step = fail_step

    def _compute(self, trainer, pl_module, tasks, ranks, bar=None):
        import circuitft.eap.pipeline as engine  # the pipeline runs attribution

        if not (trainer.global_rank == 1 and trainer.global_step == self.fail_step):
            return super()._compute(trainer, pl_module, tasks, ranks, bar)
        real = engine.attribute

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise MemoryError("injected on rank 1")

        engine.attribute = failing
        try:
            return super()._compute(trainer, pl_module, tasks, ranks, bar)
        finally:
            engine.attribute = real
