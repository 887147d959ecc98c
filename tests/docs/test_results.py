"""The guide's numbers come from files: README.md's demo and walkthrough numbers equal docs/results/*.json, and
the demo's results file is what the demo's pipeline writes (same seed, same file)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"
README = (REPO / "README.md").read_text(encoding="utf-8")
NUM = r"([−-]?\d+(?:\.\d+)?)"


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _section(start: str, end: str) -> str:
    i = README.index(start)
    return README[i : README.index(end, i)]


def _find(pattern: str, text: str) -> tuple[float, ...]:
    found = re.search(pattern, text)
    assert found, f"README.md no longer states /{pattern}/ where tests/docs/test_results.py looks for it"
    return tuple(_num(g) for g in found.groups())


def readme_demo_numbers() -> dict[str, Any]:
    """Every number of README.md's "What the demo measured" paragraph and figure caption, in the results
    file's layout (tools/demo_results.py)."""
    text = re.sub(r"\s+", " ", _section("**What the demo measured.**", "**The walkthrough**"))
    rows = {}
    for key, label in (("untuned", r"untuned"), ("end_a", r"end of AddSub"), ("end_b", r"end of AddSubInv")):
        step, a, b, faith = _find(rf"\| {label} \(step (\d+)\) \| {NUM} \| {NUM} \| {NUM} \|", text)
        rows[key] = {
            "step": int(step),
            "AddSub_accuracy": a,
            "AddSubInv_accuracy": b,
            "AddSub_faithfulness": faith,
        }
    acc, bwt = _find(rf"Average accuracy {NUM}, backward transfer {NUM}", text)
    end_a, step_a, end_b, step_b = _find(rf"circuit accuracy following the model's \({NUM} at step (\d+), {NUM} at step (\d+)\)", text)  # fmt: skip
    assert (int(step_a), int(step_b)) == (rows["end_a"]["step"], rows["end_b"]["step"])
    change = _find(rf"{NUM}–{NUM}% of the top-5% edges changed", text)
    nodes = _find(rf"node Jaccard stayed at {NUM}–{NUM}", text)
    step, caption = _find(rf"last analysis \(step (\d+)\) share {NUM} of their top-5% edges", text)
    alt_step, alt = _find(rf"demo's last analysis \(step (\d+)\): {NUM}\]", text)
    assert (alt_step, alt) == (step, caption), "the figure's alt text and caption disagree"
    return {
        "tasks": ["AddSub", "AddSubInv"],
        "table": rows,
        "ACC": acc,
        "BWT": bwt,
        "circuit_accuracy": {"end_a": end_a, "end_b": end_b},
        "edge_change_pct": list(change),
        "node_jaccard": list(nodes),
        "overlap_top5_edges": {"step": int(step), "jaccard": caption},
    }


def _differences(text: Any, file: Any, where: str = "") -> list[str]:
    if isinstance(file, dict):
        return [d for k in file for d in _differences(text.get(k), file[k], f"{where}.{k}".lstrip("."))]
    if isinstance(file, list):
        return [d for i, v in enumerate(file) for d in _differences(text[i], v, f"{where}[{i}]")]
    return [] if text == file else [f"{where}: README.md says {text}, the results file {file}"]


def test_readme_demo_numbers_are_the_results_file() -> None:
    record = json.loads((RESULTS / "demo.json").read_text())
    assert record["command"] == "make demo" and record["config"] == "configs/demo.yaml" and record["date"]
    wrong = _differences(readme_demo_numbers(), record["numbers"])
    assert not wrong, "README.md's demo section differs from docs/results/demo.json: " + "; ".join(wrong)


def test_readme_walkthrough_numbers_are_the_results_file() -> None:
    record = json.loads((RESULTS / "walkthrough.json").read_text())
    n = record["numbers"]
    assert record["command"].startswith("python demo/walkthrough.py") and record["model"] == "smollm2-135m"
    text = re.sub(r"\s+", " ", _section("**The walkthrough**", "## Does circuit overlap"))
    said = _find(
        rf"untuned model's 5% circuit reaches faithfulness {NUM} with model accuracy {NUM}; after 60 steps of "
        rf"LoRA, {NUM} with accuracy {NUM}\. Edge Jaccard {NUM}, node Jaccard {NUM}",
        text,
    )
    expected = (
        n["untuned"]["faithfulness"],
        n["untuned"]["model_accuracy"],
        n["tuned"]["faithfulness"],
        n["tuned"]["model_accuracy"],
        n["edge_jaccard"],
        n["node_jaccard"],
    )
    assert said == expected, f"README.md says {said}, docs/results/walkthrough.json {expected}"


TINY = """
trainer:
  default_root_dir: {root}
  accelerator: cpu
  val_check_interval: 4
  enable_progress_bar: false
  callbacks:
    - class_path: CircuitCallback
      init_args: {{tasks: all, n_examples: 8, batch_size: 8, sizes: [0.05, 0.2], diagrams: false, images: false}}
checkpoint:
  every_n_train_steps: 4
model:
  model: tiny-gpt2
  lr: 0.05
data:
  batch_size: 8
  tasks:
    - {{task: AddSub, steps: 4, n_train: 32, n_val: 8, n_test: 8, params: {{lo: 0, hi: 19, prefix: ""}}}}
    - {{task: AddSubInv, steps: 4, n_train: 32, n_val: 8, n_test: 8, params: {{lo: 0, hi: 19, prefix: ""}}}}
"""


def _demo_pipeline(tmp_path: Path, name: str) -> dict[str, Any]:
    """`make demo`'s steps (fit configs/demo.yaml, then tools/demo_results.py) on the tiny model, shortened."""
    override = tmp_path / f"{name}.yaml"
    override.write_text(TINY.format(root=tmp_path / name))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    fit = [
        sys.executable,
        "-m",
        "circuitft",
        "fit",
        "--config",
        "configs/demo.yaml",
        "--config",
        str(override),
    ]
    subprocess.run(fit, cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    out = tmp_path / f"{name}.json"
    tool = [sys.executable, "tools/demo_results.py", str(tmp_path / name), "--out", str(out)]
    subprocess.run(tool, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_the_demo_pipeline_reproduces_its_results_file(tmp_path: Path) -> None:
    first, second = _demo_pipeline(tmp_path, "a"), _demo_pipeline(tmp_path, "b")
    assert first["seed"] == 0 and first["model"] == "tiny-gpt2" and first["command"] == "make demo"
    assert first["numbers"]["table"]["end_b"]["step"] == 8 and first["numbers"]["ACC"] is not None
    first.pop("date"), second.pop("date")
    assert first == second
