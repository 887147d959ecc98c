"""Hostile input, resource bombs: a small file or option never makes a command hang, or allocate gigabytes,
before it refuses with one line. Each case asserts the refusal comes within a few seconds."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import pytest
import torch

from analysis.synth import write_run
from circuitft.cli import COMMANDS, main
from circuitft.errors import CircuitftError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quick.yaml")
# modules a command imports before its checks (the engine, for circuit): imported before the clock starts
WARM = {
    "circuit": (
        "circuitft.eap.attribute",
        "circuitft.eap.baseline",
        "circuitft.eap.evaluate",
        "circuitft.eap.summary",
    )
}
FAST_S = 15.0  # "within a few seconds" on an idle machine (about 1 s there); room for a loaded one, far below a hang


def laughs(levels: int = 12, width: int = 10) -> str:
    """A billion-laughs YAML value: ``width ** levels`` strings once aliases are expanded (about 1 KB)."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def refuse(capsys, *args: str | Path) -> str:
    """Run ``circuitft ARGS``: exit 2 with one error line and no traceback, within FAST_S (not counting the
    command's module imports, which a loaded test machine makes slow); the line."""
    for module in (COMMANDS[str(args[0])][0], *WARM.get(str(args[0]), ())):
        importlib.import_module(module)
    t0 = time.perf_counter()
    rc = main([str(a) for a in args])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert seconds < FAST_S, f"took {seconds:.1f} s to refuse"
    return errors[0]


# ---- YAML alias bombs and deep nesting, in every command that reads YAML ---------------------------------
def test_fit_config_with_a_billion_laughs_is_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(laughs() + "seed_everything: 0\n")
    assert bomb.stat().st_size < 2048
    line = refuse(capsys, "fit", "--config", QUICK, "--config", bomb)
    assert str(bomb) in line and "aliases" in line


def test_sweep_file_with_a_billion_laughs_is_refused(tmp_path, capsys):
    bomb = tmp_path / "sweep.yaml"
    bomb.write_text(f"fit_config: {QUICK}\n" + laughs())
    line = refuse(capsys, "sweep", "--config", bomb, "--dry_run")
    assert "aliases" in line


def test_circuit_and_export_configs_with_a_billion_laughs_are_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(laughs())
    assert "aliases" in refuse(capsys, "circuit", "--config", bomb)
    assert "aliases" in refuse(capsys, "export", "--config", bomb)


def test_an_alias_bomb_given_as_an_option_value_is_refused(tmp_path, capsys):
    value = "{" + laughs().replace("\n", ", ").rstrip(", ") + "}"
    line = refuse(
        capsys, "fit", "--config", QUICK, "--trainer.default_root_dir", tmp_path / "r", "--data.tasks", value
    )
    assert "aliases" in line


def test_a_recursive_alias_and_deep_nesting_are_refused(tmp_path, capsys):
    rec = tmp_path / "rec.yaml"
    rec.write_text("a: &a [1, *a]\n")
    assert "recursive alias" in refuse(capsys, "fit", "--config", rec)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nested too deeply" in refuse(capsys, "fit", "--config", deep)


def test_a_run_config_with_a_billion_laughs_is_refused_by_report(tmp_path, capsys):
    write_run(tmp_path / "run", [("A", 10)], {0: {"A": (0.1, 0.1)}, 10: {"A": (0.9, 0.8)}})
    (tmp_path / "run" / "config.yaml").write_text(laughs())
    line = refuse(capsys, "report", tmp_path / "run", "--out", tmp_path / "rep")
    assert "config.yaml" in line and "aliases" in line
    assert not (tmp_path / "rep").exists()


def test_large_but_honest_yaml_is_read():
    from circuitft.safeyaml import load_yaml

    shared = "base: &b {lr: 0.1, steps: 10}\n" + "".join(f"r{i}: *b\n" for i in range(2000))
    assert load_yaml(shared, "x")["r1999"] == {"lr": 0.1, "steps": 10}


# ---- sweep sizes are counted before anything is built ---------------------------------------------------
def test_sweep_permutations_are_counted_before_they_are_built(tmp_path, capsys):
    tasks = ["Abs", "Add", "Sub", "Mul", "FloorDiv", "Modulo", "Max", "Min", "AddSub", "IOI", "Copy", "Rev"]
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"fit_config: {QUICK}\nroot_dir: {tmp_path}/runs\npermutations: {{tasks: {tasks}, length: 10}}\n"
    )
    line = refuse(capsys, "sweep", "--config", sweep, "--dry_run")
    assert "239,500,800 runs" in line and "--max_runs 10,000" in line
    small = tmp_path / "small.yaml"
    small.write_text(
        f"fit_config: {QUICK}\nroot_dir: {tmp_path}/runs\npermutations: {{tasks: [A, B, C], length: 2}}\n"
    )
    line = refuse(capsys, "sweep", "--config", small, "--max_runs", "5", "--dry_run")
    assert "6 runs" in line and "--max_runs 5" in line


# ---- graph files: shapes checked before anything is allocated ---------------------------------------------
BOMB_CFG = {"n_layers": 200, "n_heads": 64, "parallel_attn_mlp": False, "d_model": 64}


def _json_bomb(path: Path) -> Path:
    path.write_text(json.dumps({"cfg": BOMB_CFG, "nodes": {}, "edges": {}}))
    assert path.stat().st_size < 200
    return path


def _safetensors_bomb(path: Path) -> Path:
    from safetensors.torch import save_file

    tensors = {k: torch.zeros(1) for k in ("edge_scores", "edge_in_graph", "nodes_in_graph")}
    save_file(tensors, str(path), {"format": "circuitft.graph", "cfg": json.dumps(BOMB_CFG), "meta": "{}"})
    return path


@pytest.mark.parametrize("make", [_json_bomb, _safetensors_bomb])
def test_graph_file_claiming_a_huge_model_is_refused_before_allocating(tmp_path, make):
    from circuitft.eap.io import load_graph

    path = make(tmp_path / ("g.json" if make is _json_bomb else "g.safetensors"))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"possible edges, more than the 100,000,000"):
        load_graph(path)
    assert time.perf_counter() - t0 < FAST_S


def test_circuit_graph_bomb_is_refused_before_the_model_loads(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("clean,corrupted,answer,wrong\n1 + 2 =,1 + 5 =,3,6\n")
    path = _json_bomb(tmp_path / "g.json")
    line = refuse(
        capsys, "circuit", "--model", "tiny-gpt2", "--data", data, "--graph", path, "--out", tmp_path / "o"
    )
    assert "g.json" in line and "possible edges" in line


def test_report_on_a_run_with_a_graph_bomb_is_refused(tmp_path, capsys):
    graphs = write_run(tmp_path / "run", [("A", 10)], {0: {"A": (0.1, 0.1)}, 10: {"A": (0.9, 0.8)}})
    files = sorted((tmp_path / "run" / "circuits").rglob("*.safetensors"))
    assert graphs and files
    _safetensors_bomb(files[0])
    line = refuse(capsys, "report", tmp_path / "run", "--out", tmp_path / "rep")
    assert files[0].name in line and "possible edges" in line


def test_graph_cfg_types_are_checked(tmp_path):
    from circuitft.eap.io import load_graph

    for cfg, match in [
        ({**BOMB_CFG, "n_layers": "2"}, "n_layers must be a positive integer"),
        (
            {**BOMB_CFG, "n_layers": 2, "parallel_attn_mlp": "false"},
            "parallel_attn_mlp must be true or false",
        ),
        ({**BOMB_CFG, "n_layers": 2, "n_heads": 5000}, "at most 1,024"),
    ]:
        path = tmp_path / "g.json"
        path.write_text(json.dumps({"cfg": cfg, "nodes": {}, "edges": {}}))
        with pytest.raises(DataError, match=match):
            load_graph(path)


# ---- counts given as options ------------------------------------------------------------------------------
def test_ig_steps_and_batch_size_have_named_upper_bounds(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("clean,corrupted,answer,wrong\n1 + 2 =,1 + 5 =,3,6\n")
    common = ["circuit", "--model", "tiny-gpt2", "--data", data, "--out", tmp_path / "o"]
    assert "--ig_steps must be at most 1,000" in refuse(capsys, *common, "--ig_steps", "1000000")
    assert "--batch_size must be at most 65,536" in refuse(capsys, *common, "--batch_size", "10000000")
    assert "--n must be at most 10,000,000" in refuse(
        capsys, "tasks", "make", "Add", "--n", "1000000000", "--out", tmp_path / "x.csv"
    )


def test_callback_and_data_module_bounds():
    from circuitft.callbacks.circuit import CircuitCallback
    from circuitft.data.stream import TaskStreamDataModule

    with pytest.raises(ConfigError, match="CircuitCallback ig_steps must be at most 1,000"):
        CircuitCallback(ig_steps=10**6)
    with pytest.raises(ConfigError, match="data.batch_size must be at most 65,536"):
        TaskStreamDataModule(tasks=[{"task": "Add", "steps": 2}], batch_size=10**9)


# ---- input files that are not regular files -------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    return path


def test_a_fifo_as_data_file_is_refused_without_blocking(tmp_path, capsys, fifo):
    line = refuse(capsys, "circuit", "--model", "tiny-gpt2", "--data", fifo, "--out", tmp_path / "o")
    assert "not a regular file (a FIFO)" in line


def test_a_fifo_as_config_or_graph_file_is_refused_without_blocking(tmp_path, capsys, fifo):
    from circuitft.eap.io import load_graph

    assert "not a regular file (a FIFO)" in refuse(capsys, "fit", "--config", fifo)
    graph = tmp_path / "g.json"
    os.mkfifo(graph)
    with pytest.raises(DataError, match=r"not a regular file \(a FIFO\)"):
        load_graph(graph)


def test_a_device_as_data_file_is_refused(tmp_path, capsys):
    from circuitft.data.sources import load_rows

    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"not a regular file \(a device\)"):
        load_rows(link)


def test_errors_are_circuitft_errors():
    assert issubclass(DataError, CircuitftError) and issubclass(ConfigError, CircuitftError)


def test_a_fifo_as_checkpoint_is_refused_without_blocking(tmp_path, fifo):
    from circuitft.models.checkpoint import load_checkpoint_file

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"not a regular file \(a FIFO\)"):
        load_checkpoint_file(fifo)
    assert time.perf_counter() - t0 < FAST_S
