"""Bad input to ``model.lora_plan: circuit`` and ``circuitft circuitlora plan``: one line, exit 2, no files."""

from __future__ import annotations

from pathlib import Path

import lightning  # noqa: F401 - imported outside capsys: its log handler must not hold a test's stderr
import pytest
import yaml

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, model: str = "tiny-gpt2", **options: object) -> Path:
    cfg = {
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False},
        "model": {"model": model, "lora_plan": "circuit", "circuit_lora": {"probe_steps": 2, **options}},
        "data": {
            "batch_size": 4,
            "tasks": [{"task": "AddSub", "steps": 2, "n_train": 8, "n_val": 4, "params": {"lo": 0, "hi": 9}}],
        },
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def unsupported_model(tmp_path_factory) -> str:
    """A tiny OPT model folder: loads as a causal LM, has no circuits support."""
    from transformers import OPTConfig, OPTForCausalLM

    from circuitft.models.loading import load_model

    folder = tmp_path_factory.mktemp("opt")
    tok = load_model("tiny-gpt2").tokenizer
    cfg = OPTConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=2,
        ffn_dim=32,
        num_attention_heads=2,
        max_position_embeddings=64,
        word_embed_proj_dim=16,
    )
    OPTForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


CASES = [
    ({"k": 3}, "model.circuit_lora.k must be between 1 and the model's 2 layers, got 3"),
    ({"r_other": 0}, "model.circuit_lora.r_other must be at least 1, got 0"),
    ({"r_critical": -1}, "model.circuit_lora.r_critical must be at least 1"),
    ({"probe_rank": 0}, "model.circuit_lora.probe_rank must be at least 1"),
    ({"probe_steps": 0}, "model.circuit_lora.probe_steps must be at least 1, got 0"),
    ({"assignment": "middle"}, "model.circuit_lora.assignment must be one of destination, source, both"),
    ({"kk": 3}, "model.circuit_lora: unknown option(s) ['kk']"),
    ({"k": "five"}, "model.circuit_lora.k must be int"),
]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _no_files(*paths: Path) -> bool:
    return all(not p.exists() or (p.is_dir() and not [f for f in p.rglob("*") if f.is_file()]) for p in paths)


@pytest.mark.parametrize("command", ["fit", "plan"])
@pytest.mark.parametrize("options, expect", CASES)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, command, options, expect):
    root, out = tmp_path / "run", tmp_path / "plan.json"
    args = ["--config", str(_config(tmp_path, **options)), "--trainer.default_root_dir", str(root)]
    argv = ["fit", *args] if command == "fit" else ["circuitlora", "plan", *args, "--output", str(out)]
    assert main(argv) == 2
    assert expect in _one_error_line(capsys)
    assert _no_files(root, out)


@pytest.mark.parametrize("command", ["fit", "plan"])
def test_model_without_circuits_support_is_refused(tmp_path, capsys, unsupported_model, command):
    root = tmp_path / "run"
    args = [
        "--config",
        str(_config(tmp_path, model=unsupported_model)),
        "--trainer.default_root_dir",
        str(root),
    ]
    assert main(["fit", *args] if command == "fit" else ["circuitlora", "plan", *args]) == 2
    line = _one_error_line(capsys)
    assert "model.lora_plan circuit needs circuits" in line and "'opt'" in line
    assert _no_files(root)


def test_unknown_action_and_help(capsys):
    assert main(["circuitlora", "bogus"]) == 2
    assert "unknown action 'bogus'" in _one_error_line(capsys)
    assert main(["circuitlora", "--help"]) == 0
    assert "uniform_rank_equal_budget" in capsys.readouterr().out
