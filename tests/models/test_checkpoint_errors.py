"""Unreadable checkpoints: one line of our own naming the file and the readable checkpoints beside it."""

from __future__ import annotations

import pytest
import torch

from circuitft.errors import ConfigError
from circuitft.models.checkpoint import load_checkpoint_file


def _folder(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (3, 6):
        torch.save({"global_step": step, "w": torch.ones(3)}, folder / f"step{step:06d}.ckpt")
    data = (folder / "step000006.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    return folder


def test_truncated_checkpoint_names_the_readable_ones(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_checkpoint_file(folder / "last.ckpt")
    msg = str(err.value)
    assert msg.startswith(f"checkpoint {folder / 'last.ckpt'} cannot be read (")
    assert "readable checkpoints beside it: step000006.ckpt, step000003.ckpt" in msg or (
        "readable checkpoints beside it: step000003.ckpt, step000006.ckpt" in msg
    )
    assert "--ckpt_path" in msg and "\n" not in msg and "weights_only" not in msg


@pytest.mark.parametrize("content", [b"", b"random bytes, not a checkpoint" * 10, "pickle"])
def test_foreign_files_never_get_pytorchs_unsafe_advice(tmp_path, content):
    path = tmp_path / "x.ckpt"
    if content == "pickle":  # a real archive holding an object that weights_only refuses
        torch.save({"obj": ConfigError("x")}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_checkpoint_file(path)
    msg = str(err.value)
    assert msg.startswith(f"checkpoint {path} cannot be read (") and msg.endswith(
        "no readable checkpoint beside it"
    )
    assert "weights_only" not in msg and "\n" not in msg


def test_fit_resume_from_a_truncated_last_ckpt_is_one_line(tmp_path, capsys):
    from pathlib import Path

    from circuitft.cli import main

    folder = _folder(tmp_path)
    quick = Path(__file__).resolve().parents[2] / "configs" / "quick.yaml"
    assert main(["fit", "--config", str(quick), "--trainer.default_root_dir", str(tmp_path),
                 "--ckpt_path", "last"]) == 2  # fmt: skip
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert len(err) == 1 and f"checkpoint {folder / 'last.ckpt'} cannot be read" in err[0], err
    assert "step000006.ckpt" in err[0]
