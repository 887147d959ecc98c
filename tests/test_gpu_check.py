"""benchmarks/gpu_check.sh: no GPU -> one line and exit 2; a missing package is named; --smoke runs it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "OUT_DIR": str(tmp_path / "out"), **env}
    full["PYTHONPATH"] = env.get("PYTHONPATH", "")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    result = run([], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_option_and_missing_package_are_named(tmp_path):
    result = run(["--fast"], tmp_path)
    assert result.returncode == 2 and "unknown option --fast" in result.stderr
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "safetensors.py").write_text("raise ImportError('not installed here')\n")
    result = run(["--smoke"], tmp_path, PYTHONPATH=str(shadow))
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert "missing Python package safetensors" in result.stderr and ".whl/" in result.stderr


@pytest.mark.slow
def test_smoke_run_writes_every_figure(tmp_path):
    result = run(["--smoke"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "out" / "gpu_check.jsonl").read_text().splitlines()]
    figures = [x["figure"] for x in lines]
    assert figures == [
        "cuda_tests",
        "eap_float32",
        "eval_float32",
        "eap_bfloat16",
        "eval_bfloat16",
        "train",
        "projection",
    ]
    printed = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [x["figure"] for x in printed] == figures
    by = {x["figure"]: x for x in lines}
    assert by["cuda_tests"]["failed"] == 0 and by["cuda_tests"]["errors"] == 0
    if not torch.cuda.is_available():
        assert by["cuda_tests"]["skipped"] >= 10 and by["cuda_tests"]["passed"] == 0
    for dtype in ("float32", "bfloat16"):
        assert by[f"eap_{dtype}"]["eap_seconds_per_100_batches"] > 0 and by[f"eap_{dtype}"]["eap_ratio"] > 0
        assert by[f"eval_{dtype}"]["eval_ratio"] > 0
    assert by["train"]["train_steps_per_second"] > 0
    p = by["projection"]
    assert p["hours_total"] == pytest.approx(
        p["hours_training"] + p["hours_circuits"] + p["hours_validation"], abs=0.01
    )
