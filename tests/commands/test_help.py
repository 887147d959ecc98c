"""`--help` of every command: fast (nothing beyond Lightning to build it), each option described, the circuit
callback listed and found by its short name, one default model named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
OURS = ("--model.", "--data.", "--checkpoint.", "--trainer.callbacks.")  # options circuitft documents
IMPORTED = """
import contextlib, io, sys
from circuitft.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(sys.argv[1:]) == 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"peft", "accelerate"})
if sys.argv[1] == "tasks":  # tasks --help needs neither Lightning nor torch
    heavy += [m for m in ("torch", "lightning") if m in sys.modules]
heavy += [m for m in ("circuitft.models.loading", "circuitft.models.lora") if m in sys.modules]
print(len(out.getvalue().splitlines()), " ".join(heavy))
"""


def _help(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_fit_help_lists_the_circuit_callback_and_describes_every_option(capsys) -> None:
    text = _help(capsys, "fit")
    assert "circuitft.callbacks.CircuitCallback" in text  # among the known callbacks
    model = next(b for b in re.split(r"\n  ARG:   ", text) if b.startswith("--model.model "))
    assert re.search(r"default:\s+smollm2-135m\)", model) and "SmolLM2-135M-Instruct" in model  # named
    blocks = re.split(r"\n  ARG:   ", text)[1:]
    undocumented = [
        b.split()[0]
        for b in blocks
        if b.split()[0].startswith(OURS)
        and re.match(r"^\s*\((required, )?type:", b.split("\n", 2)[-1].strip())
    ]
    assert undocumented == []
    accuracy = next(b for b in blocks if b.startswith("--model.accuracy "))
    assert "probe run" not in accuracy  # the stray fragment of lora_plan's text
    lora_plan = next(b for b in blocks if b.startswith("--model.lora_plan "))
    assert "CircuitLoRA" in lora_plan


def test_callback_found_by_its_short_name(capsys) -> None:
    assert main(["fit", "--trainer.callbacks.help", "CircuitCallback"]) == 0
    text = capsys.readouterr().out
    assert "--trainer.callbacks.every_n_steps" in text and "--trainer.callbacks.top_frac" in text
    assert not re.search(r"--trainer\.callbacks\.(method|metric|ig_steps|top_n) [A-Z_]+\n\s+\(type", text)


@pytest.mark.parametrize("command", ["fit", "validate", "tasks"])
def test_help_imports_no_model_library(command: str) -> None:
    """What makes `fit --help` slow beyond Lightning itself: peft, accelerate and circuitft's model loading
    (transformers comes with Lightning's torchmetrics)."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTED, command, "--help"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines, *heavy = proc.stdout.split()
    assert int(lines) > 5 and heavy == []


def test_usage_is_aligned(capsys) -> None:
    assert main(["--help"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    starts = {len(ln) - len(ln.lstrip()[ln.lstrip().index(" ") :].lstrip()) for ln in rows}
    assert len(rows) == 11 and len(starts) == 1  # every description starts in one column ("circuitlora" too)


def _cpu_seconds(*argv: str) -> float:
    """CPU seconds (user + system) of a fresh Python running ``argv``: steadier than wall time on a loaded
    machine."""
    before = os.times()
    subprocess.run([sys.executable, *argv], capture_output=True, check=True, timeout=600)
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


@pytest.mark.slow
def test_fit_help_costs_little_beyond_importing_lightning() -> None:
    """`fit --help` within 1.5 s of `python -c "import lightning"`, measured beside each other (best of 3)."""
    lightning, help_ = [], []
    for _ in range(3):
        lightning.append(_cpu_seconds("-c", "import lightning"))
        help_.append(_cpu_seconds("-m", "circuitft", "fit", "--help"))
    assert min(help_) - min(lightning) <= 1.5, (help_, lightning)
    start = time.perf_counter()
    _cpu_seconds("-m", "circuitft", "tasks", "--help")
    assert time.perf_counter() - start < max(lightning) + 1.5  # tasks --help does not even import Lightning


@pytest.mark.parametrize(
    "argv", [("circuit",), ("tasks", "check", "x.csv"), ("bench", "eap")], ids=["circuit", "check", "bench"]
)
def test_every_model_option_names_the_default(capsys, argv: tuple[str, ...]) -> None:
    text = re.sub(r"\s+", " ", _help(capsys, *argv))
    assert "smollm2-135m, the embedded SmolLM2-135M-Instruct" in text
    assert "%%" not in text  # the size curve's help printed "0.5%% ... 50%%"
