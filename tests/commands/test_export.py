"""`circuitft export`: a checkpoint's adapter as a peft folder that reproduces the checkpoint's model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitft.cli import main
from circuitft.models import load_model
from circuitft.models.checkpoint import model_from_checkpoint, wrap_lora


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    peft_model = wrap_lora(load_model("tiny-gpt2").model, r=2, alpha=4.0, dropout=0.0)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in trainable.values():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    hp = {"model": "tiny-gpt2", "model_seed": 0, "lora_r": 2, "lora_alpha": 4.0, "target_modules": "auto"}
    state = {f"model.{n}": p.detach().clone() for n, p in trainable.items()}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 7\n")
    data = {"tasks": ["A", "B"], "task_idx": 1, "step_in_task": 2}
    path = run / "checkpoints" / "step000005.ckpt"
    torch.save(
        {"hyper_parameters": hp, "state_dict": state, "global_step": 5, "TaskStreamDataModule": data}, path
    )
    return path


def test_exported_folder_loads_with_peft_and_matches_the_checkpoint(tmp_path, ckpt, capsys):
    from peft import PeftModel

    out = tmp_path / "adapter"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert (out / "adapter_config.json").is_file() and (
        out / "config.yaml"
    ).read_text() == "seed_everything: 7\n"
    info = json.loads((out / "circuitft.json").read_text())
    assert info["model"] == "tiny-gpt2" and info["global_step"] == 5 and info["task"] == "B"
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    reloaded = PeftModel.from_pretrained(load_model("tiny-gpt2").model, str(out)).eval()
    want = model_from_checkpoint(ckpt).model
    base = load_model("tiny-gpt2").model.eval()
    with torch.no_grad():
        got, ref, plain = (m(input_ids=ids).logits for m in (reloaded, want, base))
    assert torch.allclose(got, ref, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter is really in it


@pytest.mark.parametrize("case", ["missing", "nonempty"])
def test_bad_input_one_line_nothing_written(tmp_path, ckpt, capsys, case):
    out = tmp_path / "adapter"
    if case == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
        args = ["export", str(ckpt), "--out", str(out)]
        expect = "not an empty folder"
    else:
        args = ["export", str(tmp_path / "none.ckpt"), "--out", str(out)]
        expect = "file not found"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expect in err and len(err.strip().splitlines()) == 1
    assert (sorted(p.name for p in out.iterdir()) == ["keep.txt"]) if case == "nonempty" else not out.exists()
