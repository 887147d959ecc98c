"""configs/experiments/finetune_circuits.yaml: FinetuneCircuits' main setting parses and runs (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "experiments" / "finetune_circuits.yaml")


def test_config_is_the_papers_setting(capsys):
    assert main(["fit", "--config", CONFIG, "--print_config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    model, data = cfg["model"], cfg["data"]
    assert model["model"] == "EleutherAI/pythia-1.4b-deduped"
    assert (model["lora_r"], model["lora_alpha"], model["target_modules"]) == (32, 64, "all-linear")
    assert (model["lr"], model["warmup_steps"], model["weight_decay"]) == (2e-4, 25, 0.01)
    assert data["batch_size"] == 32 and cfg["seed_everything"] == 42
    assert data["tasks"][0]["task"] == "FCAddSub" and data["tasks"][0]["epochs"] == 2
    assert cfg["checkpoint"]["every_n_train_steps"] == 25 == cfg["trainer"]["val_check_interval"]


def test_config_runs_two_steps_on_tiny_gpt2(tmp_path):
    root = tmp_path / "run"
    rc = main([
        "fit", "--config", CONFIG, "--model.model", "tiny-gpt2", "--trainer.accelerator", "cpu",
        "--trainer.precision", "32-true", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--data.tasks", '[{"task": "FCAddSub", "steps": 2, "epochs": null, "n_train": 16, "n_val": 8}]',
        "--data.batch_size", "4", "--trainer.val_check_interval", "1", "--checkpoint.every_n_train_steps", "1",
    ])  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == [
        "last.ckpt",
        "step000001.ckpt",
        "step000002.ckpt",
    ]
    steps = sorted(p.name for p in (root / "circuits").iterdir() if p.is_dir())
    assert steps == ["step000000", "step000001", "step000002"], "circuits at the untuned model and each step"
    lines = [json.loads(x) for x in (root / "circuits" / "metrics.jsonl").read_text().splitlines()]
    assert {x.get("task") for x in lines} == {"FCAddSub"}
    val = (root / "data" / "FCAddSub" / "val.csv").read_text()
    assert "Calculate the result of the following arithmetic expression" in val
