"""Writing cache folders atomically, so a crash or a concurrent process never leaves half a folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_folder(write: Callable[[str], None], folder: Path) -> None:
    """Create ``folder`` by ``write(tmp)`` into a sibling temp folder, then renaming it into place.

    Readers never see a partial folder; if ``write`` raises (or the process is interrupted) the temp folder
    is removed. If another process created ``folder`` meanwhile, its folder is kept and ours discarded.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(str(tmp))
        tmp.chmod(0o755)
        try:
            os.replace(tmp, folder)  # fails if folder exists and is not empty: another process won
        except OSError:
            if not folder.is_dir():
                raise
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
