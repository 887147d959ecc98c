"""``circuitft bench eap`` on a tiny model: one JSON line with the timing keys."""

from __future__ import annotations

import json

import pytest
import torch

from circuitft.cli import main as cli_main
from circuitft.timing import KEYS, synthetic_pairs


def test_bench_eap_prints_one_json_line(capsys):
    old = torch.get_num_threads()
    try:
        status = cli_main(
            ["bench", "eap", "--model", "tiny-gpt2", "--batch_size", "2", "--seq_len", "6", "--batches", "2",
             "--ig_steps", "2", "--repeats", "1", "--device", "cpu", "--threads", "1"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(old)
    assert status == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(KEYS) <= set(record)
    assert record["model"] == "tiny-gpt2" and record["seq_len"] == 6 and record["n_edges"] == 110
    for key in ("eap_seconds", "floor_seconds", "eval_seconds", "eval_floor_seconds"):
        assert record[key] > 0
    assert record["eap_ratio"] == pytest.approx(record["eap_seconds"] / record["floor_seconds"], rel=0.01)


def test_bench_rejects_bad_options(capsys):
    assert cli_main(["bench", "eap", "--model", "tiny-gpt2", "--batch_size", "0"]) == 2
    assert "--batch_size" in capsys.readouterr().err


def test_synthetic_pairs_differ_in_a_few_positions():
    pairs = synthetic_pairs(100, 4, 10, n_changed=3)
    assert pairs.clean_ids.shape == (4, 10) and pairs.max_len == 10
    changed = (pairs.clean_ids != pairs.corrupted_ids).sum(1)
    assert (changed <= 3).all() and (changed >= 1).all()
    assert torch.equal(pairs.clean_ids[:, 0], pairs.corrupted_ids[:, 0])
    assert torch.equal(pairs.answer_ids[:, 0], pairs.clean_ids[:, -1])
