"""Every number with its n and denominator: the metric gap, row counts, held-out lines in the summary."""

from __future__ import annotations

import logging

from circuitft.callbacks.messages import small_gaps, task_line
from circuitft.callbacks.records import CircuitRecord
from circuitft.eap.summary import rows_note, small_gap_warning, summary_text, warnings_for

BASE = {
    "task": "AddSub", "model": "m", "method": "EAP", "metric": "kl", "n_examples": 3, "n_edges": 10,
    "n_edges_total": 100, "n_nodes": 4, "faithfulness": 0.9, "metric_gap": 0.05, "model_accuracy": 0.5,
    "circuit_accuracy": 0.25, "faithfulness_se": 0.15,
}  # fmt: skip


def test_small_gap_is_a_warning_naming_the_analysis():
    assert small_gap_warning({**BASE, "faithfulness_se": 0.05}, "x") is None and small_gap_warning(BASE, "x")
    want = "task AddSub: faithfulness 0.90 ± 0.29 (95%, over the rows) rests on a clean-corrupted gap of only"
    assert want in warnings_for(BASE)[-1]
    assert not any("rests on" in w for w in warnings_for({**BASE, "faithfulness_se": float("nan")}))


def test_summary_shows_the_gap_and_flags_few_rows():
    text = summary_text({**BASE, "n_examples_heldout": 0})
    assert "faithfulness 0.9 ± 0.29 (95%), clean-corrupted gap 0.05" in text
    assert "(n=3 rows, fewer than 20: one row moves it by 33 points)" in text
    assert "held-out: none" in text
    held = {**BASE, "n_examples": 40, "n_examples_heldout": 40, "faithfulness_heldout": 0.7,
            "metric_gap_heldout": 1.5, "model_accuracy_heldout": 0.5, "circuit_accuracy_heldout": 0.4}  # fmt: skip
    text = summary_text(held)
    assert "(n=40 rows)" in text
    assert (
        "held-out (n=40 rows not used to find it): faithfulness 0.7 (gap 1.5), accuracy model 50%, circuit 40%"
        in text
    )
    assert rows_note(25) == "n=25 rows"


def test_callback_line_and_gap_warning():
    rec = CircuitRecord(4, "A", "A", "EAP", "kl", 2, 3, "p", {**BASE, "n_examples_heldout": 30.0,
                        "faithfulness_heldout": 0.5, "model_accuracy_heldout": 0.1,
                        "circuit_accuracy_heldout": 0.2})  # fmt: skip
    line = task_line(rec)
    assert "faithfulness 0.90 ± 0.29 (gap 0.05)" in line and "circuit 0.25 on 3 rows (< 20)" in line
    assert "held-out faithfulness 0.50, accuracy model 0.10, circuit 0.20 on 30 rows |" in line
    other = CircuitRecord(4, "B", "A", "EAP", "kl", 2, 3, "p", {"metric_gap": 1.0, "faithfulness_se": 0.01})
    warning = small_gaps([rec, other], 4)
    assert warning.startswith(
        "step 4: the clean and corrupted runs differ too little against the row-to-row spread for A (gap 0.05, "
        "faithfulness 0.90 ± 0.29): "
    )
    assert small_gaps([other], 4) is None


def test_a_split_smaller_than_asked_is_a_warning_at_start(tiny, tmp_path, caplog):
    from circuitft.data.splits import split_of
    from circuitft.data.stream import TaskStreamDataModule

    rows = [(f"{a}+{b}=", f"{a}+{b + 1}=", str(a + b)) for a in range(10, 40) for b in (11, 22)]
    (tmp_path / "t.csv").write_text("clean,corrupted,answer\n" + "".join(",".join(r) + "\n" for r in rows))
    n_val = sum(split_of(r[0]) == "val" for r in rows)
    tasks = [{"task": "t", "source": str(tmp_path / "t.csv"), "steps": 2, "n_val": n_val + 5}]
    dm = TaskStreamDataModule(tasks=tasks, batch_size=4)
    dm.tokenizer = tiny("tiny-gpt2").tokenizer
    with caplog.at_level(logging.WARNING):
        dm.check_rows(tmp_path / "run", resuming=False)
    assert len(dm.task_pairs("t", "val")) == n_val
    assert f"task t: split val has {n_val} rows, fewer than the {n_val + 5} asked" in caplog.text


def test_callback_warns_about_splits_smaller_than_n_examples():
    from circuitft.callbacks.messages import short_splits

    class Stream:
        def task_pairs(self, task: str, split: str) -> list:
            return [0] * {"val": 32, "test": 5}[split]

    assert short_splits(Stream(), ["A"], ("val", "test"), 32) == [
        "task A: split test has 5 rows, fewer than the CircuitCallback's n_examples=32: the circuit numbers "
        "on it rest on 5 rows"
    ]
    assert short_splits(Stream(), ["A"], ("val",), 32) == []
