"""What ``circuitft fit`` tells the user besides the progress bars: the model, a resume, a fresh start, an
interrupt, and the summary at the end of the run (every line is built here; train.py prints them)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitft.eap.summary import MIN_ROWS


@dataclass
class Resume:
    """Where a fit resumes: the checkpoint file, its global step and the stream it was made for."""

    path: Path
    step: int
    stages: list[str]
    steps: list[int]

    @property
    def total(self) -> int:
        """Optimizer steps of the whole stream."""
        return sum(self.steps)

    def line(self) -> str:
        """``resuming AddSub (task 1/2) at step 3 of 12 from runs/quick/checkpoints/last.ckpt``."""
        if not self.steps:
            return f"resuming at step {self.step} from {self.path}"
        if self.step >= self.total:
            return (
                f"the run in {self.path} finished at step {self.step} of {self.total}: nothing left to train"
            )
        ends = [sum(self.steps[: i + 1]) for i in range(len(self.steps))]
        i = next(k for k, end in enumerate(ends) if self.step < end)
        name = self.stages[i] if i < len(self.stages) else f"stage {i + 1}"
        return (
            f"resuming {name} (task {i + 1}/{len(self.steps)}) at step {self.step} of {self.total} "
            f"from {self.path}"
        )


def fresh_start_line(folder: Path) -> str:
    """``--ckpt_path last`` before any checkpoint exists: the run starts from step 0."""
    return f"--ckpt_path last: no checkpoint in {folder} yet, so this run starts fresh from step 0"


def model_line(spec: str, module: Any, names: Sequence[str]) -> str:
    """``model tiny-gpt2: 4.1K of 38.7K parameters trainable; tasks AddSub -> AddSubInv``."""
    params = list(module.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    counts = (
        f"{_count(trainable)} of {_count(total)} parameters trainable"
        if trainable
        else "adapter set up later"
    )
    return f"model {spec}: {counts}; tasks {' -> '.join(names)}"


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def resume_command(argv: Sequence[str]) -> str:
    """``circuitft fit ARGS --ckpt_path last``: the user's arguments with any other ``--ckpt_path`` dropped."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if arg.startswith("--ckpt_path="):
            continue
        kept.append(arg)
    return shlex.join(["circuitft", "fit", *kept, "--ckpt_path", "last"])


def interrupt_line(step: int, total: int, argv: Sequence[str]) -> str:
    """What to run after Ctrl-C."""
    where = f" at step {step} of {total}" if total else f" at step {step}"
    return f"interrupted{where}; resume from the last checkpoint with:\n  {resume_command(argv)}"


def tensorboard_command(root: Path) -> str:
    """``tensorboard --logdir_spec NAME:RUN``: the run shows under its folder's name (not ``.``)."""
    name = root.resolve().name
    if not name or any(c in name for c in ":,"):
        return shlex.join(["tensorboard", "--logdir", str(root)])
    return shlex.join(["tensorboard", "--logdir_spec", f"{name}:{root}"])


def summary(
    root: Path,
    names: Sequence[str],
    step: int,
    total: int,
    val_acc: dict[str, float],
    final: dict[str, float],
    circuits: Path | None,
    checkpoints: Path | None,
    argv: Sequence[str],
    rows: dict[str, tuple[int, int]] | None = None,
) -> str:
    """The end of a run: tasks, final accuracies, where the outputs are and how to look at them.

    ``rows``: per task, the validation rows and the circuit analysis rows the accuracies rest on (printed
    as ``n=...``, flagged under 20)."""
    rows = rows or {}
    done = not total or step >= total
    head = f"run {root}: {len(names)} task(s) {' -> '.join(names)}, "
    head += f"finished at step {step}" if done else f"stopped at step {step} of {total}"
    lines = [head]
    for task in names:
        parts = []
        n_val, n_circuit = rows.get(task, (None, None))
        if task in val_acc:
            parts.append(f"validation accuracy {_fmt(val_acc[task])}{_n(n_val)}")
        if f"final/{task}/accuracy" in final:
            parts.append(
                f"model accuracy {_fmt(final[f'final/{task}/accuracy'])} and circuit faithfulness "
                f"{_fmt(final[f'final/{task}/faithfulness'])} on the circuit examples{_n(n_circuit)}"
            )
        if parts:
            lines.append(f"  {task}: {', '.join(parts)}")
    if circuits is not None and circuits.is_dir():
        lines.append(f"  circuits:    {circuits} (metrics.jsonl, step*/<task>.safetensors)")
    if checkpoints is not None and checkpoints.is_dir():
        lines.append(f"  checkpoints: {checkpoints} (last.ckpt)")
    if not done:
        lines.append(f"  continue:    {resume_command(argv)}")
    lines.append(
        f"  report:      {shlex.join(['circuitft', 'report', str(root), '--out', str(root / 'report')])}"
    )
    lines.append(f"  TensorBoard: {tensorboard_command(root)}")
    return "\n".join(lines)


def few_rows(accuracies: dict[str, float], rows: dict[str, int], split: str) -> list[str]:
    """A warning per task whose ``split`` accuracy rests on fewer than :data:`MIN_ROWS` rows."""
    return [
        f"warning: {split} accuracy of {task} ({_fmt(acc)}) rests on {rows[task]} rows (< {MIN_ROWS}): one row "
        f"moves it by {100 / rows[task]:.0f} points"
        for task, acc in accuracies.items()
        if 0 < rows.get(task, MIN_ROWS) < MIN_ROWS
    ]


def _n(n: int | None) -> str:
    if n is None:
        return ""
    return f" (n={n}{f', < {MIN_ROWS} rows' if 0 < n < MIN_ROWS else ''})"


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}"
