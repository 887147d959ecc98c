"""Checkpoint files written whole or not at all, with a one-line error when the disk is full.

Lightning's own writer goes through an fsspec transaction whose temporary file lies in the system temp
folder and is then *copied* onto the target when that is another file system, so a full disk can leave a
truncated ``last.ckpt``. :class:`AtomicCheckpointIO` serialises the checkpoint in memory, writes it to a
temporary file next to the target and renames it into place (:func:`circuitft.files.atomic_write`): a
crash or a full disk leaves the previous checkpoint intact and the run resumable. Each checkpoint's size is
noted in the run folder's marker (:mod:`circuitft.owned`), so a copy cut short is reported as "truncated (N of M bytes)".
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from circuitft.diskfull import DiskFull, disk_full, is_out_of_space
from circuitft.files import atomic_write
from circuitft.models.checkpoint_errors import record_size


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes each checkpoint to a sibling temp file, then renames it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """``torch.save`` into memory, then an atomic write of the bytes onto ``path``."""
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        try:
            atomic_write(path, save)
        except Exception as err:
            if isinstance(err, DiskFull) or is_out_of_space(err):
                raise disk_full(path, needed=len(data)) from None
            raise
        record_size(Path(path), len(data))


def use_atomic_checkpoints(strategy: Any) -> None:
    """Install :class:`AtomicCheckpointIO` on ``strategy`` unless the user chose another plugin."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
