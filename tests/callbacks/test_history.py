"""Forgetting, accuracy matrix, final numbers and backward transfer from records; rank blocks."""

from __future__ import annotations

import math

import pytest

from circuitft.callbacks.history import accuracy_matrix, final_metrics, forgetting, forgetting_metrics
from circuitft.callbacks.ranks import AnalysisFailed, Ranks


def _rows(acc: dict[tuple[int, str], float]) -> list[dict]:
    return [
        {"step": s, "task": t, "metrics": {"model_accuracy": a, "faithfulness": a / 2}}
        for (s, t), a in acc.items()
    ]


ROWS = _rows({(4, "A"): 0.8, (8, "A"): 0.6, (8, "B"): 0.9, (12, "A"): 0.2, (12, "B"): 0.45, (12, "C"): 1.0})


def test_forgetting_is_the_relative_drop_since_the_task_end():
    assert forgetting(ROWS, "A", 4, 0.2) == pytest.approx(0.75)
    assert forgetting(ROWS, "B", 8, 0.45) == pytest.approx(0.5)
    assert forgetting(ROWS, "C", 16, 1.0) is None  # never analysed at its end
    assert math.isnan(forgetting(_rows({(4, "A"): 0.0}), "A", 4, 0.0))


def test_accuracy_matrix_rows_are_task_ends():
    m = accuracy_matrix(ROWS, ["A", "B", "C"], [4, 8, 12], done=3)
    assert list(m.index) == ["A", "B", "C"] and list(m.columns) == ["A", "B", "C"]
    assert m.loc["B", "A"] == 0.6 and m.loc["C", "B"] == 0.45 and math.isnan(m.loc["A", "B"])
    assert len(accuracy_matrix(ROWS, ["A", "B", "C"], [4, 8, 12], done=1)) == 1


def test_final_metrics_and_backward_transfer():
    f = final_metrics(ROWS, ["A", "B", "C"], [4, 8, 12])
    assert f["final/A/accuracy"] == 0.2 and f["final/C/faithfulness"] == 0.5
    assert f["final/average_accuracy"] == pytest.approx((0.2 + 0.45 + 1.0) / 3)
    assert f["final/backward_transfer"] == pytest.approx(((0.2 - 0.8) + (0.45 - 0.9)) / 2)


@pytest.mark.parametrize("n, world", [(10, 3), (2, 4), (8, 2), (0, 2)])
def test_rank_blocks_partition_the_examples_in_order(n, world):
    blocks = []
    for rank in range(world):
        r = Ranks()
        r.rank, r.world = rank, world
        blocks.append(list(r.block(n)))
    assert sum(blocks, []) == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_one_process_failure_names_the_task():
    with pytest.raises(AnalysisFailed, match="^B: ValueError: bad rows$"):
        Ranks().gather("B", lambda: (_ for _ in ()).throw(ValueError("bad rows\nmore")))
    assert Ranks().gather("B", lambda: 3) == [3]


def test_forgetting_metrics_absolute_and_relative_prefer_heldout_rows():
    rows = [
        {"step": 4, "task": "A", "metrics": {"model_accuracy": 0.8, "model_accuracy_heldout": 0.6}},
        {"step": 4, "task": "B", "metrics": {"model_accuracy": 0.5}},
    ]
    got = forgetting_metrics(rows, "A", 4, {"model_accuracy": 0.4, "model_accuracy_heldout": 0.45})
    assert got["forgetting_abs"] == pytest.approx(0.15) and got["forgetting_rel"] == pytest.approx(0.25)
    # the task end has no held-out score: both on the analysis examples
    got = forgetting_metrics(rows, "B", 4, {"model_accuracy": 0.2, "model_accuracy_heldout": 0.1})
    assert got["forgetting_abs"] == pytest.approx(0.3) and got["forgetting_rel"] == pytest.approx(0.6)
    assert forgetting_metrics(rows, "C", 4, {"model_accuracy": 0.2}) == {}
