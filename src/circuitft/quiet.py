"""The framework messages circuitft silences by default, each named (no blanket filter).

:func:`quiet_framework` installs them once per process; ``CIRCUITFT_VERBOSE=1`` in the environment leaves
every message in place. Checked against lightning 2.6.6 and torch 2.13.

Warnings (``warnings.filterwarnings`` by message):

- LightningCLI's "args parameter" note (circuitft passes ``args`` on purpose);
- transformers' ``is_gradient_checkpointing`` deprecation (peft asks for it on every wrap);
- torch's "``isinstance(treespec, LeafSpec)`` is deprecated" FutureWarning, raised from lightning's own
  ``utilities/_pytree.py`` at every optimizer step;
- ModelCheckpoint's "Checkpoint directory ... exists and is not empty" (a resume writes into its own run
  folder on purpose; a fresh ``fit`` refuses a folder that holds checkpoints before Lightning starts);
- the training loop's "dataloader is not resumable" after a mid-task resume (the task stream restores its
  own position from the checkpoint: a resumed run matches an uninterrupted one).

Lightning's info lines (a ``logging.Filter`` on its rank-zero logger, by the line's start):

- "GPU available: ...", "TPU available: ...", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: ...";
- the "💡 Tip: ... litlogger" and "... litmodels" advertisements;
- "`Trainer.fit` stopped: `max_epochs=N` reached." (epochs are tasks here; circuitft prints its own summary);
- "Seed set to 0" (the seed is in the run's ``config.yaml``), from Lightning's seed logger;
- "Restoring states from the checkpoint path at ..." on resume (``fit`` prints its own resume line).

transformers' "Loading weights" bar of ``fit``'s model load is hidden by :class:`~circuitft.training.module.LoRAModule`
(same switch).
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "CIRCUITFT_VERBOSE"
WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    ("LightningCLI's args parameter", Warning),
    (".*is_gradient_checkpointing.*", Warning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"Checkpoint directory .* exists and is not empty", Warning),
    (r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is", Warning),
)
INFO_LINES: tuple[str, ...] = (
    "GPU available:",
    "TPU available:",
    "LOCAL_RANK: ",
    "💡 Tip: For seamless cloud logging",
    "💡 Tip: For seamless cloud uploads",
    "`Trainer.fit` stopped: `max_epochs=",
    "Seed set to ",
    "[rank: 0] Seed set to ",
)
# a resume's "Restoring states from ..." (fit prints its own line naming the checkpoint and the step)
RESUME_LINES: tuple[str, ...] = ("Restoring states from the checkpoint path at ",)
LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.seed",
)


def verbose() -> bool:
    """Whether ``CIRCUITFT_VERBOSE`` asks for every framework message."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class NamedLines(logging.Filter):
    """Drops log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a named line (dropped), True for any other."""
        return not record.getMessage().lstrip().startswith(self.prefixes)


def quiet_framework() -> None:
    """Silence the named warnings and Lightning info lines (see module docstring), unless verbose."""
    if verbose():
        return
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, NamedLines) for f in logger.filters):
            logger.addFilter(NamedLines(INFO_LINES + RESUME_LINES))
