"""TaskProgressBar: Lightning's tqdm bar naming the task being trained, with a bar for circuit analyses.

``circuitft fit`` uses it by default (``--trainer.enable_progress_bar false`` turns it off). The training bar
reads ``task 1/2 AddSub (steps 0-120)`` instead of ``Epoch 0``; during a circuit analysis a second line shows
its phase (``circuit AddSub @ step 40: attribute 3/8``). Bars go to stderr; :func:`say` prints a line above
them on stdout (rank 0 only), so results stay in the terminal while the bars keep their place.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from tqdm import tqdm


def stage_label(trainer: L.Trainer, stage: int | None = None) -> str:
    """``task i/n NAME (steps a-b)`` of stage ``stage`` (default: the one being trained), or ``""``."""
    dm = trainer.datamodule
    if dm is None or not hasattr(dm, "task_steps") or not hasattr(dm, "stage_names"):
        return ""
    steps = dm.task_steps()
    i = dm.current_stage() if stage is None else stage
    start = sum(steps[:i])
    return f"task {i + 1}/{len(steps)} {dm.stage_names[i]} (steps {start}-{start + steps[i]})"


class TaskProgressBar(TQDMProgressBar):
    """TQDMProgressBar on stderr whose training description names the current task and its step range;
    :meth:`analysis_bar` adds the circuit analysis bar below it."""

    def _bar(self, desc: str, position: int, leave: bool, smoothing: float = 0.3) -> Tqdm:
        return Tqdm(
            desc=desc,
            position=position,
            disable=self.is_disabled,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=smoothing,
            bar_format=self.BAR_FORMAT,
        )

    def init_sanity_tqdm(self) -> Tqdm:
        """Sanity-check bar (on stderr)."""
        return self._bar(self.sanity_check_description, 2 * self.process_position, False)

    def init_train_tqdm(self) -> Tqdm:
        """Training bar (on stderr)."""
        return self._bar(self.train_description, 2 * self.process_position, True, smoothing=0)

    def init_validation_tqdm(self) -> Tqdm:
        """Validation bar (on stderr, below the training bar during fit)."""
        has_main_bar = self.trainer.state.fn != "validate"
        return self._bar(
            self.validation_description, 2 * self.process_position + has_main_bar, not has_main_bar
        )

    def init_test_tqdm(self) -> Tqdm:
        """Test bar (on stderr)."""
        return self._bar("Testing", 2 * self.process_position, True)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """Name the stage being trained (one epoch per stage of the task stream); as Lightning's own, which
        would show ``Epoch N`` first."""
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset()
        bar.total = convert_inf(self.total_train_batches)
        bar.initial = 0
        bar.set_description(stage_label(trainer) or f"Epoch {trainer.current_epoch}")

    def analysis_bar(self, total: int, desc: str) -> Tqdm | None:
        """A bar below the training bar for one circuit analysis (None when bars are off)."""
        if self.is_disabled:
            return None
        bar = self._bar(desc, 2 * self.process_position + 1, False)
        bar.total = total
        return bar


def say(trainer: L.Trainer, line: str, file: Any = None) -> None:
    """Print ``line`` on rank 0 (stdout, or ``file``) above the progress bars (they are redrawn below it)."""
    if not trainer.is_global_zero:
        return

    out = file or sys.stdout
    tqdm.write(line, file=out)
    out.flush()


class AnalysisBar:
    """The bar of one circuit analysis (rank 0, under circuitft's TaskProgressBar; silent otherwise).

    Its description names the task, the step and the phase: ``circuit AddSub @ step 40: attribute 3/8``.
    """

    def __init__(self, trainer: L.Trainer, step: int) -> None:
        self.step = step
        host = trainer.progress_bar_callback
        self.enabled = trainer.is_global_zero and isinstance(host, TaskProgressBar) and host.is_enabled
        self.host = host if self.enabled else None
        self.bar: Tqdm | None = None
        self.offset, self.phase_key, self.last = 0, ("", ""), 0

    def start(self, total: int) -> None:
        """Open the bar for ``total`` batches (attribution and evaluation of every task)."""
        if self.host is not None:
            self.bar = self.host.analysis_bar(total, f"circuit @ step {self.step}: starting")

    def report(self, task: str, phase: str, done: int, total: int) -> None:
        """``done`` of ``total`` batches of ``phase`` (attribute, evaluate) of ``task``."""
        if self.bar is None:
            return
        if (task, phase) != self.phase_key:
            self.offset += self.last
            self.phase_key, self.last = (task, phase), 0
        self.last = done
        self.bar.set_description(f"circuit {task} @ step {self.step}: {phase} {done}/{total}", refresh=False)
        _set_n(self.bar, min(self.offset + done, self.bar.total or self.offset + done))

    def phase(self, text: str) -> None:
        """A phase without batches (e.g. writing files)."""
        if self.bar is not None:
            self.bar.set_description(f"circuit @ step {self.step}: {text}")

    def close(self) -> None:
        """Remove the bar (it leaves no line behind)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _set_n(bar: Tqdm, n: int) -> None:
    bar.n = n
    bar.refresh()
