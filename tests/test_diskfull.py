"""Out of disk space: one line naming the user's path, exit 2, nothing half-written, resumable fits.

ENOSPC is simulated at the lowest layer circuitft goes through (the file write itself, or safetensors'
writer): the failing call writes part of its bytes first, as a full disk does.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from circuitft.cli import main
from circuitft.diskfull import DiskFull, is_out_of_space
from circuitft.files import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quick.yaml")
SAFETENSORS_ENOSPC = (
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
)


def enospc(path: str = "") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", *([path] if path else []))


def test_out_of_space_is_recognised_in_every_form():
    assert is_out_of_space(enospc())
    assert is_out_of_space(SafetensorError(SAFETENSORS_ENOSPC))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise enospc()
        except OSError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not is_out_of_space(ValueError("28 rows"))


def test_atomic_write_names_the_target_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.jsonl"
    atomic_write_text(target, "old\n")

    def half_then_full(tmp: str) -> None:
        Path(tmp).write_text("ne")
        raise enospc()

    from circuitft.files import atomic_write

    with pytest.raises(DiskFull) as err:
        atomic_write(target, half_then_full)
    msg = str(err.value)
    assert msg.startswith(f"out of disk space writing {target} (") and "free" in msg and ".tmp" not in msg
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_cli_turns_an_unnamed_enospc_into_one_line(monkeypatch, capsys):
    import circuitft.commands.tasks as tasks

    def boom(name, argv):
        raise enospc()

    monkeypatch.setattr(tasks, "main", boom)
    assert main(["tasks", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: out of disk space writing a file"), err

    def boom2(name, argv):
        raise SafetensorError(SAFETENSORS_ENOSPC)

    monkeypatch.setattr(tasks, "main", boom2)
    assert main(["tasks", "list"]) == 2
    assert capsys.readouterr().err.startswith("error: out of disk space")


def _failing_save_file(monkeypatch, when):
    """safetensors.torch.save_file that writes half the file and fails like a full disk when ``when(path)``."""
    import safetensors.torch as st

    real = st.save_file

    def save_file(tensors, filename, metadata=None):
        if when(str(filename)):
            buf = st.save(tensors, metadata)
            Path(filename).write_bytes(buf[: len(buf) // 2])
            raise SafetensorError(SAFETENSORS_ENOSPC)
        return real(tensors, filename, metadata)

    monkeypatch.setattr(st, "save_file", save_file)


def test_circuit_out_of_space_names_out_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    data = tmp_path / "d.csv"
    data.write_text("clean,corrupted,answer\n1 + 2 =,1 + 5 =,3\n4 + 4 =,4 + 1 =,8\n")
    _failing_save_file(monkeypatch, lambda path: path.endswith(".tmp"))
    out = tmp_path / "out"
    assert main(["circuit", "--quiet", "--model", "tiny-gpt2", "--data", str(data), "--method", "EAP",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: out of disk space writing {out} ("), err
    assert "Traceback" not in "\n".join(err) and ".tmp" not in err[-1]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_checkpoint_write_out_of_space_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from circuitft.training.checkpoint_io import AtomicCheckpointIO

    io_ = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io_.save_checkpoint({"global_step": 3, "w": torch.ones(4)}, path)
    _failing_open(monkeypatch, lambda p: ".last.ckpt." in p)
    with pytest.raises(DiskFull) as err:
        io_.save_checkpoint({"global_step": 6, "w": torch.zeros(4)}, path)
    assert str(err.value).startswith(f"out of disk space writing {path} (needs ")
    assert torch.load(path, weights_only=True)["global_step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class _HalfWriter(io.BufferedWriter):
    def write(self, data):  # type: ignore[override]
        super().write(bytes(data)[: len(data) // 2])
        self.flush()
        raise enospc()


def _failing_open(monkeypatch, when):
    """builtins.open whose binary writes to a path matching ``when`` stop halfway with ENOSPC."""
    real = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if "wb" in mode and when(str(file)):
            return _HalfWriter(io.FileIO(file, "w"))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


def _fit(root: Path, *extra: str) -> int:
    return main(["fit", "--config", QUICK, "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra])  # fmt: skip


def _complete(root: Path) -> None:
    """Nothing half-written: every checkpoint and circuit file loads, no temporary file is left."""
    from safetensors.torch import load_file

    assert not [p for p in root.rglob("*.tmp")]
    for p in (root / "checkpoints").glob("*.ckpt"):
        torch.load(p, weights_only=True)
    for p in (root / "circuits").rglob("*.safetensors"):
        load_file(p)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "step"), [("circuit", 9), ("checkpoint", 6)])
def test_fit_out_of_space_is_resumable_and_resume_matches(tmp_path, monkeypatch, capsys, where, step):
    whole, full = tmp_path / "whole", tmp_path / "full"
    assert _fit(whole) == 0
    with monkeypatch.context() as m:
        if where == "circuit":  # the second task's file of step 9: the first one is already written
            _failing_save_file(m, lambda p: "step000009" in p and "AddSubInv" in p)
        else:
            _failing_open(m, lambda p: "step000006.ckpt" in p)
        capsys.readouterr()
        assert _fit(full) == 2
    capsys_text = capsys.readouterr().err
    err = [ln for ln in capsys_text.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and err[0].startswith("error: out of disk space writing "), capsys_text
    assert "SafetensorError" not in capsys_text and "OSError" not in capsys_text  # no traceback of ours
    assert f"step{step:06d}" in err[0] and ".tmp" not in err[0]
    _complete(full)
    last = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == step - 3 and not (full / "checkpoints" / f"step{step:06d}.ckpt").exists()
    assert _fit(full, "--ckpt_path", "last") == 0
    _complete(full)
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    ra, rb = (
        [json.loads(x) for x in (r / "circuits" / "metrics.jsonl").read_text().splitlines()]
        for r in (whole, full)
    )
    assert [(r["step"], r["task"]) for r in ra] == [(r["step"], r["task"]) for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert x["metrics"].keys() == y["metrics"].keys()
        differ = {
            k: (x["metrics"][k], y["metrics"][k])
            for k in x["metrics"]
            if not (
                abs(x["metrics"][k] - y["metrics"][k]) < 1e-4
                or math.isnan(x["metrics"][k])
                and math.isnan(y["metrics"][k])
            )
        }
        assert not differ, (x["step"], x["task"], differ)
