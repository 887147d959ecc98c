"""Progress of attribution and evaluation: a tqdm bar, nothing, or a caller's ``(done, total)`` hook.

``progress=True`` shows a tqdm bar (``circuitft circuit``), ``False`` shows nothing, and a callable is told
``(done, total)`` after each unit of work (the circuit callback draws its own bar under Lightning's from it).
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

Progress = bool | Callable[[int, int], None]


class Counter:
    """Counts work done and shows it as ``progress`` asks (see module docstring)."""

    def __init__(self, total: int, progress: Progress, desc: str) -> None:
        self.total, self.done = total, 0
        self.hook = progress if callable(progress) else None
        self.bar = None if self.hook else tqdm(total=total, disable=not progress, desc=desc)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if self.hook is not None:
            self.hook(self.done, self.total)
        elif self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Close the bar (if any)."""
        if self.bar is not None:
            self.bar.close()
