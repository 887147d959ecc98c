"""One circuit pipeline: the command, the API, the CircuitLoRA probe and the callback's engine find the same
circuit with the same numbers as :func:`circuitft.eap.pipeline.find_circuit`, on the same rows and settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import circuitft as cf
from circuitft.callbacks.engine import analyse
from circuitft.callbacks.ranks import Ranks
from circuitft.circuitlora import probe
from circuitft.circuitlora.options import CircuitLoRAOptions
from circuitft.cli import main
from circuitft.eap import pipeline
from circuitft.eap.heldout import hold_out
from circuitft.eap.io import load_graph
from circuitft.eap.settings import CircuitSettings

PREFIX = "Solve the following and respond with only the final answer: "
ROWS = [  # clean, corrupted, answer, wrong (digits are one token each in the tiny tokenizer)
    ("59+63=", "59+15=", "122", "74"),
    ("72-61=", "72-69=", "11", "3"),
    ("48+71=", "48+55=", "119", "103"),
    ("85-23=", "85-47=", "62", "38"),
    ("31+24=", "31+52=", "55", "83"),
    ("90-45=", "90-18=", "45", "72"),
    ("27+36=", "27+58=", "63", "85"),
    ("64-19=", "64-33=", "45", "31"),
]
SCORES = ("faithfulness", "faithfulness_se", "metric_gap", "model_accuracy", "circuit_accuracy")


def _csv(path: Path, rows: list[tuple[str, ...]]) -> Path:
    lines = ["clean,corrupted,answer,wrong"]
    lines += [",".join([PREFIX + x if i < 2 else x for i, x in enumerate(r)]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    model = cf.load("tiny-gpt2", progress=False)
    data = _csv(folder / "addsub.csv", ROWS)
    pairs, held = hold_out(cf.load_pairs(data, model), 0.25)
    settings = CircuitSettings(
        method="EAP-IG-inputs", ig_steps=2, batch_size=3, top_frac=0.2, baseline_samples=0, size_curve="false"
    )
    found = pipeline.find_circuit(model.model, pairs, settings, heldout=held)
    return model, data, pairs, held, settings, found


def _same_graph(a, b) -> None:
    assert torch.equal(a.scores, b.scores)
    assert torch.equal(a.in_graph, b.in_graph) and a.count_edges() > 0


def test_api_calls_the_pipeline(setup) -> None:
    model, _, pairs, held, s, found = setup
    graph = cf.find_circuit(
        model, pairs, method=s.method, ig_steps=s.ig_steps, top_frac=s.top_frac, batch_size=3, progress=False
    )
    _same_graph(graph, found.graph)
    numbers = cf.evaluate_circuit(model, graph, pairs, batch_size=3, progress=False, heldout=held)
    for key in (*SCORES, "n_edges", "n_nodes", "faithfulness_heldout", "n_examples_heldout"):
        assert numbers[key] == pytest.approx(
            found.scores.get(key, found.heldout.get(key)), abs=0, nan_ok=True
        )


def test_probe_calls_the_pipeline(setup) -> None:
    model, _, pairs, _, s, found = setup
    opts = CircuitLoRAOptions(method=s.method, ig_steps=s.ig_steps, batch_size=3, top_frac=s.top_frac)
    _same_graph(probe.find_circuit(model.model, pairs, opts, "cpu"), found.graph)


def test_engine_builds_on_the_pipeline(setup) -> None:
    model, _, pairs, held, s, found = setup
    task = pairs.task
    result = analyse(model.model, {task: pairs}, s, Ranks(), heldout={task: held})[task]
    _same_graph(result.graph, found.graph)
    for key in (*SCORES, "n_edges", "n_nodes"):
        assert result.summary[key] == found.scores[key], key
    for key, value in found.heldout.items():
        assert result.summary[key] == pytest.approx(value, abs=0, nan_ok=True), key


def test_command_calls_the_pipeline(setup, tmp_path, capsys) -> None:
    model, data, pairs, _, s, found = setup
    out = tmp_path / "out"
    options = ["--method", s.method, "--ig_steps", "2", "--batch_size", "3", "--top_frac", "0.2"]
    argv = ["circuit", "--quiet", "--model", "tiny-gpt2", "--data", str(data), "--heldout_frac", "0.25"]
    argv += [*options, "--baseline_samples", "0", "--size_curve", "false", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    _same_graph(load_graph(out / "graph.safetensors"), found.graph)
    metrics = json.loads((out / "metrics.json").read_text())
    for key, value in found.metrics.items():
        if key not in ("seed",):
            assert metrics[key] == value, key
    assert metrics["n_examples_heldout"] == 2 and math.isfinite(metrics["faithfulness_heldout"])


def test_one_definition_of_the_options() -> None:
    """The command's attribution options are the dataclass fields (with its defaults), not a copy of them."""
    from dataclasses import fields

    from circuitft.commands.circuit import SETTINGS, build_parser

    parser = build_parser()
    defaults = parser.get_defaults()
    names = [f.name for f in fields(CircuitSettings) if f.name != "where"]
    assert list(SETTINGS) == names
    for f in fields(CircuitSettings):
        if f.name != "where":
            assert defaults[f.name] == f.default, f.name
