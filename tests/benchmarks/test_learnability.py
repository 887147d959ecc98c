"""benchmarks/learnability.py: held-out accuracy against steps, on rows the training never sees."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learnability.py"


def _load():
    spec = importlib.util.spec_from_file_location("learnability", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["learnability"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_recipes_parse_and_bad_ones_name_the_part():
    mod = _load()
    assert mod.Recipe.parse("cosine:1e-3:10") == mod.Recipe("cosine", 1e-3, 10)
    assert str(mod.Recipe.parse("constant:2.5e-3")) == "constant:0.0025"
    for bad in ("cosine", "cosine:fast", "cosine:1e-3:ten", "a:1:2:3"):
        with pytest.raises(ValueError, match="recipe"):
            mod.Recipe.parse(bad)


@pytest.mark.slow
def test_tiny_run_scores_held_out_rows_at_each_point(tmp_path):
    mod = _load()
    out = tmp_path / "learn.json"
    argv = ["--model", "tiny-gpt2", "--tasks", "Add", "--recipes", "constant:0.05", "cosine:0.05:2"]
    argv += ["--steps", "4", "--eval_every", "2", "--batch_size", "4", "--n_heldout", "8", "--lo", "1"]
    argv += ["--hi", "19", "--out", str(out)]
    assert mod.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["seed"] == 0 and record["command"].endswith("--out " + str(out))
    assert [r["recipe"] for r in record["results"]] == ["constant:0.05", "cosine:0.05:2"]
    for r in record["results"]:
        assert [p["step"] for p in r["points"]] == [0, 2, 4]
        assert all(p["n"] == 16 and 0.0 <= p["accuracy"] <= 1.0 for p in r["points"])  # val 8 + test 8
        assert r["points"][0]["train_s"] == 0.0 < r["points"][-1]["train_s"]
    # the same seed gives the same curve
    again = tmp_path / "again.json"
    assert mod.main([*argv[:-1], str(again)]) == 0

    def curves(path):
        return [
            [(p["step"], p["accuracy"], p["n"]) for p in r["points"]]
            for r in json.loads(path.read_text())["results"]
        ]

    assert curves(again) == curves(out)
