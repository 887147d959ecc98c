"""``sweep --dry_run`` checks every run's model and data and lists every problem before anything starts."""

from __future__ import annotations

from pathlib import Path

from circuitft.cli import main

QUICK = Path(__file__).resolve().parents[2] / "configs" / "quick.yaml"


def test_dry_run_lists_missing_models_and_data_of_every_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    good = tmp_path / "good.csv"
    good.write_text("clean,corrupted,answer\n1 + 2 =,1 + 5 =,3\n")
    missing = tmp_path / "missing.csv"
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"fit_config: {QUICK}\nroot_dir: {tmp_path / 'runs'}\nruns:\n"
        "  - {name: hub, args: [--model.model, nobody/not-cached]}\n"
        f'  - {{name: data, args: [--data.tasks, \'[{{"task": "X", "source": "{missing}", "steps": 2}}]\']}}\n'
        f'  - {{name: ok, args: [--data.tasks, \'[{{"task": "X", "source": "{good}", "steps": 2}}]\']}}\n'
    )
    assert main(["sweep", "--config", str(spec), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(
        "error: run hub: model.model nobody/not-cached: model 'nobody/not-cached' is not in"
    )
    assert err[1] == f"error: run data: data.tasks[0]: source {missing}: file not found"
    assert err[2] == "error: 2 problems in the sweep's runs (listed above); nothing was run"
    assert len(err) == 3 and not (tmp_path / "runs").exists()


def test_model_problems_by_kind(tmp_path, monkeypatch):
    from circuitft.preflight import model_problem

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("CIRCUITFT_DOWNLOAD", raising=False)
    assert model_problem("tiny-gpt2", full=True) is None
    assert "unknown model spec 'nope'" in model_problem("nope", full=True)
    assert model_problem(str(tmp_path / "gone")) == f"model folder {tmp_path / 'gone'} does not exist"
    (tmp_path / "folder").mkdir()
    assert "has no config.json" in model_problem(str(tmp_path / "folder"))
    assert "hf download owner/name" in model_problem("owner/name")
    monkeypatch.setenv("CIRCUITFT_DOWNLOAD", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert model_problem("owner/name") is None  # downloading allowed: the loader will try
