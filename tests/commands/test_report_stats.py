"""`circuitft report` on a pair sweep whose records carry held-out scores: fit.json recomputed with SciPy
from pairs.csv, the prospective Jaccard from the graph files, the selection/outcome split, and chance levels
on every overlap the report prints."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from analysis.synth import node_names, top_names, write_run
from analysis.test_uncertainty import independent_permutation_p
from circuitft.cli import main as cli_main
from circuitft.eap.chance import expected_jaccard
from circuitft.eap.io import read_safetensors

# A's (model acc, circuit acc) on the discovery rows at the end of A and of B, and A's held-out model
# accuracy at the end of A and of B
PAIRS = {
    ("Abs", "Add"): (0.95, 0.90, 0.85, 0.40),
    ("Abs", "Sub"): (0.95, 0.90, 0.90, 0.20),
    ("Abs", "Mul"): (0.90, 0.86, 0.88, 0.70),
    ("Add", "Abs"): (0.90, 0.85, 0.80, 0.75),
    ("Add", "Sub"): (0.90, 0.88, 0.92, 0.90),
    ("Add", "Mul"): (0.91, 0.84, 0.86, 0.60),
    ("Sub", "Abs"): (0.80, 0.70, 0.70, 0.40),  # left out: circuit accuracy 0.70 < 0.8
    ("Sub", "Add"): (0.92, 0.82, 0.75, 0.50),
    ("Sub", "Mul"): (0.93, 0.88, 0.81, 0.66),
}


def make(root):
    for n, ((a, b), (m, c, h_end_a, h_end_b)) in enumerate(PAIRS.items()):
        analyses = {
            0: {a: (0.1, 0.1)},
            10: {a: (m, c), b: (0.2, 0.1)},
            20: {a: (m - 0.3, c - 0.3), b: (0.9, 0.9)},
        }
        extra = {
            (10, a): {"model_accuracy_heldout": h_end_a, "circuit_accuracy_heldout": c - 0.05,
                      "n_examples_heldout": 64, "metric_gap": 1.5, "split_half_jaccard": 0.6,
                      "faithfulness_heldout": 0.7},
            (20, a): {"model_accuracy_heldout": h_end_b, "circuit_accuracy_heldout": c - 0.4},
            (10, b): {"split_half_jaccard": 0.5},
        }  # fmt: skip
        write_run(root / f"{a}__{b}", [(a, 10), (b, 10)], analyses, seed=n, extra_metrics=extra)


@pytest.fixture(scope="module")
def rep(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout_sweep")
    make(root / "sweep")
    rc = cli_main(["report", str(root / "sweep"), "--out", str(root / "rep"), "--max_run_sections", "1"])
    assert rc == 0
    return root


def test_fit_json_recomputed_with_scipy_from_pairs_csv(rep):
    pairs = pd.read_csv(rep / "rep" / "tables" / "pairs.csv")
    fit = json.loads((rep / "rep" / "fit.json").read_text())
    for name, (x, y) in {
        "headline": ("jaccard", "forgetting_abs"),
        "prospective": ("jaccard_prospective", "forgetting_abs"),
        "model_rel": ("jaccard", "forgetting_rel"),
    }.items():
        sub = pairs[pairs["included"] & pairs[x].notna() & pairs[y].notna()]
        f = fit[name]
        assert (f["x"], f["y"], f["n"], f["left_out"]) == (x, y, 8, 1)
        res = pearsonr(sub[x], sub[y])
        ci = res.confidence_interval(0.95)
        assert f["r"] == pytest.approx(res.statistic) and f["r_ci"] == pytest.approx([ci.low, ci.high])
        assert f["rho"] == pytest.approx(spearmanr(sub[x], sub[y]).statistic)
        assert f["n_first_tasks"] == 3 and f["n_second_tasks"] == 4
        for key in ("rho_ci", "r_ci_cluster_first", "r_ci_cluster_both"):
            assert len(f[key]) == 2
        assert 0 < f["p_perm"] <= 1 and f["p_perm_method"].startswith("exact")
        assert f["verdict"].split(":")[0] in (
            "Consistent with no relation",
            "Positive relation",
            "Negative relation",
        )
        assert "r" not in f["sigmoid"] and {"aic_line", "aic_sigmoid", "loo_r2_line"} <= set(f["comparison"])
    assert fit["headline"]["outcome_rows"] == "heldout" and "discovery" in fit["headline"]["inclusion_rows"]
    # an independent permutation p (plain shuffles within first tasks) agrees within sampling error
    sub = pairs[pairs["included"]]
    q = independent_permutation_p(sub["jaccard"].to_numpy(), sub["forgetting_abs"].to_numpy(), list(sub["A"]))
    p = fit["headline"]["p_perm"]
    assert abs(p - q) < 4 * math.sqrt(max(p * (1 - p), 1e-4) / 20000) + 1e-3


def test_selection_and_outcome_on_different_rows(rep):
    pairs = pd.read_csv(rep / "rep" / "tables" / "pairs.csv").set_index(["A", "B"])
    for (a, b), (_, c, h_a, h_b) in PAIRS.items():
        row = pairs.loc[(a, b)]
        assert row["circuit_acc_A_end_A"] == pytest.approx(c)  # inclusion: discovery rows
        assert bool(row["included"]) == (c >= 0.8)
        assert row["outcome_rows"] == "heldout"
        assert row["model_acc_A_end_A"] == pytest.approx(h_a) and row["model_acc_A_end_B"] == pytest.approx(
            h_b
        )
        assert row["forgetting_abs"] == pytest.approx(h_a - h_b)
        assert row["forgetting_rel"] == pytest.approx((h_a - h_b) / h_a)
        assert row["circuit_forgetting_abs"] == pytest.approx(0.35)  # held-out circuit accuracy
        assert row["split_half_jaccard_A"] == pytest.approx(0.6)


def test_prospective_jaccard_from_the_graph_files_at_the_end_of_a(rep):
    pairs = pd.read_csv(rep / "rep" / "tables" / "pairs.csv").set_index(["A", "B"])
    for a, b in PAIRS:
        circuits = rep / "sweep" / f"{a}__{b}" / "circuits"
        ga = read_safetensors(circuits / "step000010" / f"{a}.safetensors")
        gb = read_safetensors(circuits / "step000010" / f"{b}.safetensors")
        ta, tb = top_names(ga), top_names(gb)
        row = pairs.loc[(a, b)]
        assert row["jaccard_prospective"] == pytest.approx(len(ta & tb) / len(ta | tb))
        k, n = len(ta), ga.cfg.n_edges
        e = expected_jaccard(k, k, n)
        assert row["jaccard_prospective_chance"] == pytest.approx(e) and row[
            "jaccard_chance"
        ] == pytest.approx(e)
        assert row["jaccard_corrected"] == pytest.approx((row["jaccard"] - e) / (1 - e))


def test_every_printed_overlap_has_its_chance_level(rep):
    out = rep / "rep"
    ov = pd.read_csv(out / "tables" / "overlap.csv")
    for m in ("edge_jaccard", "node_iou", "node_iou_matched"):
        assert ov[f"{m}_chance"].notna().all()
        below = ov[f"{m}_chance"] < 1  # every node in both circuits: chance 1, nothing to correct (n/a)
        assert ov.loc[below, f"{m}_corrected"].notna().all() and ov.loc[~below, f"{m}_corrected"].isna().all()
    row = ov[ov["A"] != ov["B"]].iloc[0]
    run = rep / "sweep" / row["run"] / "circuits" / f"step{int(row['step']):06d}"
    na, nb = (node_names(read_safetensors(run / f"{t}.safetensors")) for t in (row["A"], row["B"]))
    n_nodes = read_safetensors(run / f"{row['A']}.safetensors").cfg.n_forward
    assert row["node_iou"] == pytest.approx(len(na & nb) / len(na | nb))
    assert row["node_iou_chance"] == pytest.approx(expected_jaccard(len(na), len(nb), n_nodes))
    assert row["split_half_jaccard_A"] == pytest.approx(0.5) or math.isnan(row["split_half_jaccard_A"])
    fl = pd.read_csv(out / "tables" / "change_first_last.csv")
    assert {
        "edge_change_chance",
        "edge_change_corrected",
        "node_change_chance",
        "node_change_corrected",
    } <= set(fl.columns)
    circuits = pd.read_csv(out / "tables" / "circuits.csv")
    for col in ("edge_change_prev", "node_change_prev", "edge_change_first", "node_change_first"):
        defined = circuits[col].notna()
        assert defined.any() and circuits.loc[defined, f"{col}_chance"].notna().all()
        some = defined & (circuits[f"{col}_chance"] > 0)  # a chance of 0 (every node kept) has no ratio
        ratio = circuits.loc[some, col] / circuits.loc[some, f"{col}_chance"]
        assert np.allclose(circuits.loc[some, f"{col}_corrected"], ratio)
    assert {"faithfulness_heldout", "metric_gap", "n_examples_heldout"} <= set(circuits.columns)
    page = (out / "index.html").read_text()
    assert page.count("<th>chance</th>") >= 3  # the overlap table's three measures
    assert "of random sets of the same sizes" in page
    assert "Pearson r [95% Fisher, assumes independent pairs]" in page
    assert "held-out rows not used to find circuits" in page


def test_faithfulness_figure_names_held_out_rows_and_the_gap(rep):
    page = (rep / "rep" / "index.html").read_text()
    assert "dashed on held-out rows" in page
    assert "clean-corrupted gap it divides by (metric_gap) runs from 1.500 to 1.500" in page
