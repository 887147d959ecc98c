"""``model.lora_plan: circuit`` end to end on tiny-gpt2: plan file, trained ranks, lr groups, chart, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from circuitft.circuitlora.plan import module_layer
from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "val_check_interval": 1.0,
    },
    "checkpoint": {"every_n_train_steps": 2},
    "model": {
        "model": "tiny-gpt2",
        "lr": 1.0e-2,
        "lora_plan": "circuit",
        "circuit_lora": {
            "probe_steps": 2,
            "k": 1,
            "r_critical": 6,
            "alpha_critical": 12,
            "r_other": 2,
            "alpha_other": 4,
            "critical_lr_scale": 2.0,
            "n_examples": 4,
            "ig_steps": 1,
            "batch_size": 4,
            "top_frac": 0.2,
        },
    },
    "data": {
        "batch_size": 4,
        "tasks": [{"task": "AddSub", "steps": 6, "n_train": 16, "n_val": 4, "params": {"lo": 0, "hi": 9}}],
    },
}


def write_config(tmp_path: Path, **model: object) -> Path:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["model"]["circuit_lora"].update(model)
    path = tmp_path / "circuitlora.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def planned_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("circuitlora")
    root = tmp / "run"
    assert main(["fit", "--config", str(write_config(tmp)), "--trainer.default_root_dir", str(root)]) == 0
    return root


def test_trained_adapter_has_the_planned_ranks(planned_run, tmp_path):
    from circuitft.models.checkpoint import model_from_checkpoint

    plan = json.loads((planned_run / "circuit_lora.json").read_text())
    assert len(plan["critical_layers"]) == 1 and len(plan["layer_scores"]) == 2
    model = model_from_checkpoint(planned_run / "checkpoints" / "last.ckpt").model
    model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())  # peft's own record
    assert saved["r"] == 2 and saved["lora_alpha"] == 4
    assert saved["rank_pattern"] == plan["rank_pattern"] and saved["alpha_pattern"] == plan["alpha_pattern"]
    assert set(plan["rank_pattern"]) == {
        m for m in plan["ranks"] if module_layer(m) in plan["critical_layers"]
    }
    ranks = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            ranks[name.removeprefix("base_model.model.")] = module.lora_A["default"].weight.shape[0]
    assert ranks == plan["ranks"] and set(ranks.values()) == {2, 6}
    ckpt = torch.load(planned_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert plan["parameters"]["plan"] == sum(t.numel() for t in ckpt["state_dict"].values())
    assert plan["probe"]["steps"] == 2 and plan["task"] == "AddSub"


def test_critical_modules_get_the_larger_learning_rate(planned_run):
    ckpt = torch.load(planned_run / "checkpoints" / "last.ckpt", weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 2.0]
    assert groups[1]["initial_lr"] == pytest.approx(2 * groups[0]["initial_lr"]) == pytest.approx(2e-2)
    n_critical = sum(1 for m in json.loads((planned_run / "circuit_lora.json").read_text())["rank_pattern"])
    assert len(groups[1]["params"]) == 2 * n_critical  # lora_A and lora_B of each critical module


def test_layer_score_chart_is_in_tensorboard(planned_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(planned_run), size_guidance={"images": 0}).Reload()
    assert acc.Tags()["images"] == ["circuit_lora/layer_scores"]
    assert [e.step for e in acc.Images("circuit_lora/layer_scores")] == [0]


def test_plan_command_writes_the_same_plan_and_nothing_else(planned_run, tmp_path, capsys):
    out = tmp_path / "plan.json"
    config = write_config(tmp_path)
    assert main(["circuitlora", "plan", "--config", str(config), "--output", str(out),
                 "--trainer.default_root_dir", str(tmp_path / "nothing")]) == 0  # fmt: skip
    assert "critical layers" in capsys.readouterr().out
    ours, theirs = json.loads(out.read_text()), json.loads((planned_run / "circuit_lora.json").read_text())
    for rec in (ours, theirs):
        del rec["probe"]["seconds"]
    assert ours == theirs
    assert not (tmp_path / "nothing").exists()
    # a run folder with checkpoints keeps its plan
    rc = main(
        ["circuitlora", "plan", "--config", str(config), "--trainer.default_root_dir", str(planned_run)]
    )
    assert rc == 2 and "already holds a run" in capsys.readouterr().err


def _fit(config: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(config),
           "--trainer.default_root_dir", str(root), *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_plan_then_fit_resumes_after_sigkill_to_the_same_weights(tmp_path):
    config = write_config(tmp_path)
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert _fit(config, whole).returncode == 0
    r = _fit(
        config,
        crashed,
        "--trainer.callbacks+=tests.training.killer.KillAtStep",
        "--trainer.callbacks.step",
        "3",
    )
    assert r.returncode == -9, r.stderr[-2000:]  # killed after step 3: last.ckpt is from step 2
    plan = crashed / "circuit_lora.json"
    stamp, text = plan.stat().st_mtime_ns, plan.read_text()
    r = _fit(config, crashed, "--ckpt_path", "last")
    assert r.returncode == 0, r.stderr[-2000:]
    assert plan.stat().st_mtime_ns == stamp and plan.read_text() == text  # reused, not probed again
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"]) < 1e-5
    strip = lambda s: {k: v for k, v in json.loads(s).items() if k != "probe"}  # noqa: E731
    assert strip((whole / "circuit_lora.json").read_text()) == strip(text)  # the probe is deterministic


def test_validate_reuses_the_saved_plan(planned_run, capsys):
    plan = planned_run / "circuit_lora.json"
    stamp = plan.stat().st_mtime_ns
    config = planned_run / "config.yaml"
    rc = main(
        ["validate", "--config", str(config), "--ckpt_path", str(planned_run / "checkpoints" / "last.ckpt")]
    )
    assert rc == 0
    assert "val/AddSub/acc" in capsys.readouterr().out
    assert plan.stat().st_mtime_ns == stamp  # no new probe


def test_resume_with_other_plan_options_is_refused_before_anything_is_written(planned_run, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in planned_run.rglob("*") if p.is_file()}
    rc = main(["fit", "--config", str(write_config(tmp_path, k=2)), "--trainer.default_root_dir", str(planned_run),
               "--ckpt_path", "last"])  # fmt: skip
    assert rc == 2
    assert "circuit_lora=" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in planned_run.rglob("*") if p.is_file()} == before
