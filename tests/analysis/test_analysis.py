"""Analysis tables against independent computations on synthetic run folders."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from circuitft.analysis.continual import accuracy_matrix, summaries
from circuitft.analysis.runs import find_runs, read_run
from circuitft.analysis.sweep import pairs_table
from circuitft.analysis.tables import circuits_table, first_to_last, overlap_matrices
from circuitft.eap.io import write_json
from circuitft.errors import DataError

from .synth import make_graph, node_names, top_names, write_prior_run, write_run

TASKS = [("A", 10), ("B", 10), ("C", 10)]
STEPS = [0, 4, 8, 12, 16, 20, 24, 28, 30]


def accuracies(seed: int = 0) -> dict[int, dict[str, tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    return {s: {t: (float(rng.uniform()), float(rng.uniform())) for t, _ in TASKS} for s in STEPS}


def test_accuracy_matrix_and_gem_summaries(tmp_path):
    acc = accuracies()
    write_run(tmp_path / "run", TASKS, acc)
    run = read_run(tmp_path / "run")
    assert run.tasks == ["A", "B", "C"] and run.task_ends == {"A": 10, "B": 20, "C": 30}
    r, b = accuracy_matrix(run, "model_accuracy")
    # the end of A (step 10) is the analysis at step 8, of B step 20, of C step 30
    ends = {"A": 8, "B": 20, "C": 30}
    expect = {(i, j): acc[ends[i]][j][0] for i in "ABC" for j in "ABC"}
    for (i, j), v in expect.items():
        assert r.loc[i, j] == pytest.approx(v)
    base = {j: acc[0][j][0] for j in "ABC"}
    assert list(b) == pytest.approx([base["A"], base["B"], base["C"]])
    s = summaries(r, b)
    e = expect
    assert s["ACC"] == pytest.approx((e["C", "A"] + e["C", "B"] + e["C", "C"]) / 3)
    assert s["BWT"] == pytest.approx(((e["C", "A"] - e["A", "A"]) + (e["C", "B"] - e["B", "B"])) / 2)
    assert s["FWT"] == pytest.approx(((e["A", "B"] - base["B"]) + (e["B", "C"] - base["C"])) / 2)
    forget_a = max(e["A", "A"], e["B", "A"]) - e["C", "A"]
    forget_b = max(e["A", "B"], e["B", "B"]) - e["C", "B"]
    assert s["forgetting"] == pytest.approx((forget_a + forget_b) / 2)
    assert s["BWT_terms"] == 2 and s["FWT_terms"] == 2
    rc, _ = accuracy_matrix(run, "circuit_accuracy")
    assert rc.loc["B", "A"] == pytest.approx(acc[20]["A"][1])


def test_seen_tasks_leave_cells_undefined(tmp_path):
    # tasks: seen -- B is analysed only from its own first step on; no untuned B
    analyses = {
        0: {"A": (0.1, 0.1)},
        10: {"A": (0.9, 0.8)},
        15: {"A": (0.7, 0.6), "B": (0.5, 0.4)},
        20: {"A": (0.6, 0.5), "B": (0.9, 0.9)},
    }
    write_run(tmp_path / "run", TASKS[:2], analyses)
    run = read_run(tmp_path / "run")
    r, b = accuracy_matrix(run, "model_accuracy")
    assert math.isnan(r.loc["A", "B"]) and math.isnan(b["B"])
    s = summaries(r, b)
    assert math.isnan(s["FWT"]) and s["FWT_terms"] == 0
    assert s["BWT"] == pytest.approx(0.6 - 0.9)
    assert s["forgetting"] == pytest.approx(0.9 - 0.6)


def test_circuits_table_change_against_previous_and_first(tmp_path):
    acc = accuracies(1)
    graphs = write_run(tmp_path / "run", TASKS, acc)
    table = circuits_table(read_run(tmp_path / "run"))
    assert len(table) == len(STEPS) * 3
    k = len(top_names(graphs[(0, "A")]))
    for task in "ABC":
        rows = table[table["task"] == task].reset_index(drop=True)
        for n in range(1, len(STEPS)):
            prev, curr = graphs[(STEPS[n - 1], task)], graphs[(STEPS[n], task)]
            assert rows.loc[n, "edge_change_prev"] == pytest.approx(
                1 - len(top_names(prev) & top_names(curr)) / k
            )
            a, c = node_names(prev), node_names(curr)
            assert rows.loc[n, "node_change_prev"] == pytest.approx(len(a ^ c) / len(a))
            first = graphs[(4, task)]  # the first analysis after step 0
            assert rows.loc[n, "edge_change_first"] == pytest.approx(
                1 - len(top_names(first) & top_names(curr)) / k
            )
        assert math.isnan(rows.loc[0, "edge_change_prev"]) and math.isnan(rows.loc[0, "edge_change_first"])
    ends = table[table["task_end"]]
    assert sorted(zip(ends["task"], ends["step"], strict=True)) == [("A", 8), ("B", 20), ("C", 30)]
    fl = first_to_last(table)
    last = table[(table["task"] == "B") & (table["step"] == 30)].iloc[0]
    assert fl.set_index("task").loc["B", "edge_change"] == pytest.approx(last["edge_change_first"])


def test_records_with_the_old_kl_name_are_read_under_the_new_one(tmp_path):
    write_run(tmp_path / "run", TASKS, accuracies(1), size_curve={(4, "A"): {0.05: 0.5}})
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    new = read_run(tmp_path / "run").records["kl_recovered_pct"].tolist()
    old = log.read_text()
    assert '"kl_recovered_pct"' in old
    log.write_text(old.replace('"kl_recovered_pct"', '"kl_faithfulness_pct"'))  # a run folder of before
    run = read_run(tmp_path / "run")
    assert run.records["kl_recovered_pct"].tolist() == new and all(math.isfinite(v) for v in new)
    assert "kl_faithfulness_pct" not in run.records


def test_overlap_matrices_at_the_final_step(tmp_path):
    graphs = write_run(tmp_path / "run", TASKS, accuracies(2))
    step, edge, node = overlap_matrices(read_run(tmp_path / "run"))
    assert step == 30
    for a in "ABC":
        for b in "ABC":
            ta, tb = top_names(graphs[(30, a)]), top_names(graphs[(30, b)])
            assert edge.loc[a, b] == pytest.approx(len(ta & tb) / len(ta | tb))
            na, nb = node_names(graphs[(30, a)]), node_names(graphs[(30, b)])
            assert node.loc[a, b] == pytest.approx(len(na & nb) / len(na | nb))
    step, edge, _ = overlap_matrices(read_run(tmp_path / "run"), step=4)
    assert step == 4 and list(edge.index) == ["A", "B", "C"]


def test_prior_layout(tmp_path):
    graphs = write_prior_run(
        tmp_path / "AddSub", {0: (0.1, 0.05, 80.0), 27: (0.6, 0.5, 92.0), 54: (0.9, 0.8, 95.0)}
    )
    (run_folder,) = find_runs([tmp_path])
    run = read_run(run_folder)
    assert run.layout == "prior" and run.tasks == ["AddSub"] and run.task_ends == {"AddSub": 54}
    assert run.model == "3 layers x 4 heads"
    table = circuits_table(run)
    assert list(table["circuit_accuracy"]) == [0.05, 0.5, 0.8]
    assert list(table["kl_recovered_pct"]) == [80.0, 92.0, 95.0]
    assert table["n_edges"].iloc[1] == graphs[27].count_edges()
    k = len(top_names(graphs[0]))
    assert table["edge_change_prev"].iloc[2] == pytest.approx(
        1 - len(top_names(graphs[27]) & top_names(graphs[54])) / k
    )
    r, b = accuracy_matrix(run, "model_accuracy")
    assert r.loc["AddSub", "AddSub"] == 0.9 and b["AddSub"] == 0.1


@pytest.mark.parametrize("lightning_steps", [False, True])
def test_validation_scalars_are_at_the_optimizer_step(tmp_path, lightning_steps):
    write_run(
        tmp_path / "run",
        TASKS[:2],
        {10: {"A": (0.5, 0.5)}, 20: {"A": (0.4, 0.4), "B": (0.6, 0.6)}},
        val_loss={(10, "A"): 1.5, (20, "A"): 2.5, (20, "B"): 1.0},
        lightning_steps=lightning_steps,
    )
    run = read_run(tmp_path / "run")
    assert run.val_value(10, "A", "loss") == 1.5 and run.val_value(20, "B", "loss") == 1.0
    r, _ = accuracy_matrix(run, "val_loss")
    assert r.loc["A", "A"] == 1.5 and r.loc["B", "A"] == 2.5 and math.isnan(r.loc["A", "B"])


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", r"metrics.jsonl: line 2: not valid JSON"),
        ('{"step": 3, "task": "A"}', r"metrics.jsonl: line 2: missing key 'graph_path'"),
        ('{"step": -1, "task": "A", "graph_path": "x"}', r"line 2: 'step' must be a non-negative integer"),
        (
            '{"step": 1, "task": "A", "graph_path": "x", "metrics": {"model_accuracy": "hi"}}',
            r"line 2: metric",
        ),
        ("[1, 2]", r"line 2: expected a JSON object"),
    ],
)
def test_corrupt_record_line_names_file_and_line(tmp_path, line, match):
    write_run(tmp_path / "run", TASKS[:1], {0: {"A": (0.1, 0.1)}, 5: {"A": (0.2, 0.2)}})
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], line, lines[1]]) + "\n")
    with pytest.raises(DataError, match=match):
        read_run(tmp_path / "run")


def test_failed_analyses_are_skipped(tmp_path):
    write_run(tmp_path / "run", TASKS[:1], {0: {"A": (0.1, 0.1)}, 5: {"A": (0.2, 0.2)}})
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    failed = {"step": 8, "task": "A", "graph_path": "", "error": "out of memory", "metrics": {}}
    log.write_text(log.read_text() + json.dumps(failed) + "\n")
    run = read_run(tmp_path / "run")
    assert list(run.records["step"]) == [0, 5]


def test_prior_layout_with_tasks_per_checkpoint(tmp_path):
    # a pair run A -> B as the prior work saved it: both tasks at the end of A (0) and at the end of B (270)
    folder = tmp_path / "Add__Sub"
    graphs = {}
    for n, (step, task, acc) in enumerate(
        [(0, "Add", 0.9), (0, "Sub", 0.2), (270, "Add", 0.45), (270, "Sub", 0.95)]
    ):
        g = make_graph(n)
        write_json(g, folder / f"checkpoint-{step}" / task / "graph.json")
        (folder / f"checkpoint-{step}" / task / "metrics.json").write_text(
            json.dumps({"model_accuracy": acc, "graph_accuracy": acc - 0.05})
        )
        graphs[(step, task)] = g
    run = read_run(folder)
    assert run.tasks == ["Add", "Sub"] and run.task_ends == {"Add": 0, "Sub": 270}
    (row,) = pairs_table([run], threshold=0.8).to_dict("records")
    ta, tb = top_names(graphs[(0, "Add")]), top_names(graphs[(270, "Sub")])
    assert row["jaccard"] == pytest.approx(len(ta & tb) / len(ta | tb))
    assert row["forgetting_rel"] == pytest.approx((0.9 - 0.45) / 0.9)
    assert row["circuit_forgetting_rel"] == pytest.approx((0.85 - 0.40) / 0.85) and row["included"]


def test_find_runs_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        find_runs([tmp_path / "empty"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a run folder"):
        find_runs([tmp_path / "other"])
    with pytest.raises(DataError, match="no such folder"):
        find_runs([tmp_path / "missing"])


def test_cached_measures_equal_the_overlap_module():
    from circuitft.analysis import measures
    from circuitft.eap import overlap

    from .synth import make_graph

    a, b = make_graph(7), make_graph(8)
    for frac in (0.05, 0.2):
        assert measures.edge_change(a, b, frac) == overlap.edge_change(a, b, frac=frac)
        assert measures.top_jaccard(a, b, frac) == overlap.top_k_jaccard(a, b, frac=frac)
    assert measures.edge_change(a, a) == 0.0 and measures.top_jaccard(a, a) == 1.0
