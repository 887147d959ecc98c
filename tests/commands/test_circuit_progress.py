"""`circuitft circuit` says at the start what it will run and about how long, and shows progress for every
part of the run, the random baseline and the size curve included (they ran silent before)."""

from __future__ import annotations

import re
from pathlib import Path

from circuitft.cli import main
from circuitft.commands.circuit_plan import passes_per_batch

REPO = Path(__file__).resolve().parents[2]


def test_circuit_on_a_tiny_model_emits_progress(tmp_path: Path, capsys) -> None:
    data = REPO / "demo" / "data" / "addsub_val.csv"
    argv = [
        "circuit",
        "--model",
        "tiny-gpt2",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "c"),
        "--size_curve",
        "true",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    start = re.search(
        r"circuit: EAP-IG-inputs \(5 steps\) over 110 edges on 24 rows \(3 batches of 8\), then evaluation, a random "
        r"baseline of 3 circuits and a size curve of 7 sizes: about (\d+ min )?\d+ s",
        err,
    )
    assert start, err
    first_bar = err.index("EAP-IG-inputs:")
    assert start.start() < first_bar  # said before the work starts
    for bar in (
        "EAP-IG-inputs: 100%",
        "evaluate: 100%",
        r"random baseline 3 \+ size curve \d+ \(\d+ circuits\): 100%",
    ):
        assert re.search(bar, err), bar
    assert "note: the top 5% of the edges (5 of 110) keep no edge after pruning" in err  # the widened default


def test_quiet_says_nothing_of_it(tmp_path: Path, capsys) -> None:
    data = REPO / "demo" / "data" / "addsub_val.csv"
    argv = [
        "circuit",
        "--quiet",
        "--model",
        "tiny-gpt2",
        "--data",
        str(data),
        "--limit",
        "8",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "circuit: " not in err and "random baseline 3" not in err and "%|" not in err


def test_the_estimate_counts_what_each_option_adds() -> None:
    base = passes_per_batch("EAP-IG-inputs", 5, 1000, 0, 0, one_side=False)
    assert (
        base["references"] == 0
        and base["attribute"] > passes_per_batch("EAP", 5, 1000, 0, 0, False)["attribute"]
    )
    more = passes_per_batch("EAP-IG-inputs", 5, 1000, 3, 7, one_side=False)
    half = passes_per_batch("EAP-IG-inputs", 5, 1000, 3, 7, one_side=True)
    assert more["references"] > half["references"] > 0 and more["evaluate"] == base["evaluate"]
    assert passes_per_batch(None, 5, 1000, 0, 0, False)["attribute"] == 0  # a saved graph: no attribution
