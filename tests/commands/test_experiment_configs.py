"""Every config in configs/experiments/ parses and trains two steps on tiny-gpt2 (sweeps: each kind of run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from circuitft.cli import main
from circuitft.commands import sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "configs" / "experiments"
TINY = [
    "--model.model", "tiny-gpt2", "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
    "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
]  # fmt: skip


def _fits() -> list[tuple[str, list[str]]]:
    """(id, fit arguments) of every fit config, and of the first run and every mixed run of every sweep."""
    out = []
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if "fit_config" not in spec:
            extra = []
            plan = (spec.get("model") or {}).get("circuit_lora")
            if plan:  # tiny-gpt2 has 2 layers: pick 1 critical layer, probe 2 steps
                extra = ["--model.circuit_lora", json.dumps({**plan, "k": 1, "probe_steps": 2})]
            if "query_key_value" in str((spec.get("model") or {}).get("target_modules")):
                extra += ["--model.model", "tiny-neox"]  # GPT-NeoX module names: the tiny NeoX
            out.append((path.name, ["--config", str(path), *extra]))
            continue
        fit_config, _, runs = sweep.load_sweep(path)
        picked = [runs[0]] + [r for r in runs[1:] if '"mix"' in " ".join(r.args)]
        out += [(f"{path.name}:{r.name}", ["--config", str(fit_config), *r.args]) for r in picked]
    return out


FITS = _fits()


def test_every_experiment_config_is_covered_and_every_sweep_run_checks():
    for path in EXPERIMENTS.glob("*.yaml"):
        if "fit_config" in yaml.safe_load(path.read_text()):
            fit_config, _, runs = sweep.load_sweep(path)
            sweep.check_runs(fit_config, runs, TINY)
    names = {i.split(":")[0] for i, _ in FITS}
    assert names == {p.name for p in EXPERIMENTS.glob("*.yaml")}
    assert any("multi_task.yaml:Add+Sub" == i for i, _ in FITS)


@pytest.mark.slow
@pytest.mark.parametrize("args", [a for _, a in FITS], ids=[i for i, _ in FITS])
def test_experiment_config_trains_two_steps_on_tiny_gpt2(tmp_path, args):
    late = []
    if "--model.model" in args:  # a config that needs another tiny model than tiny-gpt2
        i = args.index("--model.model")
        args, late = args[:i] + args[i + 2 :], args[i : i + 2]
    assert main(["fit", *args, *TINY, *late, "--trainer.default_root_dir", str(tmp_path)]) == 0
    assert (tmp_path / "data").is_dir() and (tmp_path / "config.yaml").is_file()
