"""configs/cluster: the SLURM scripts call circuitft with the right shard / node arguments; ddp.yaml parses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "configs" / "cluster"


def fake(tmp_path: Path, name: str) -> Path:
    """An executable that writes its arguments, one per line, to <name>.args."""
    exe = tmp_path / name
    exe.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path / (name + ".args")}\n')
    exe.chmod(0o755)
    return exe


def sbatch(script: str, args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "CIRCUITFT": str(fake(tmp_path, "circuitft")), **env}
    return subprocess.run(
        ["bash", str(CLUSTER / script), *args], capture_output=True, text=True, env=full, cwd=ROOT, timeout=60
    )


def test_array_task_runs_its_shard_of_the_sweep(tmp_path):
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_JOB_ID": "77"}
    result = sbatch("sweep_array.sbatch", ["configs/experiments/pairs.yaml"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert "shard 3/8" in result.stdout
    args = (tmp_path / "circuitft.args").read_text().split()
    assert args == ["sweep", "--config", "configs/experiments/pairs.yaml", "--shard", "3/8"]
    result = sbatch("sweep_array.sbatch", ["s.yaml", "--trainer.max_steps", "5"], tmp_path, **env)
    assert (tmp_path / "circuitft.args").read_text().split()[-4:] == ["3/8", "--", "--trainer.max_steps", "5"]


def test_array_script_outside_an_array_says_how_to_submit(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", str(CLUSTER / "sweep_array.sbatch"), "s.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and "sbatch --array=0-N-1" in result.stderr


def test_multinode_script_starts_one_fit_per_task_with_the_node_count(tmp_path):
    srun = fake(tmp_path, "srun")
    env = {"PATH": f"{srun.parent}:{os.environ['PATH']}", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4"}
    result = sbatch("ddp_multinode.sbatch", ["configs/experiments/single_task.yaml"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "srun.args").read_text().split()
    assert args[1:5] == ["fit", "--config", "configs/experiments/single_task.yaml", "--config"]
    assert args[5] == "configs/cluster/ddp.yaml"
    assert args[6:] == ["--trainer.devices", "4", "--trainer.num_nodes", "2"]


@pytest.mark.slow
def test_ddp_config_parses_on_top_of_a_run_config():
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", "configs/quick.yaml", "--config",
           "configs/cluster/ddp.yaml", "--trainer.num_nodes", "2", "--print_config"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-1000:]
    assert "num_nodes: 2" in result.stdout and "DDPStrategy" in result.stdout and "2:00:00" in result.stdout
