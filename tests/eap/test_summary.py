"""Plain-language readings of circuit metrics: definitions, warnings, the 80% point, the summary text."""

from __future__ import annotations

import math

from circuitft.eap.summary import (
    add_readings,
    definitions,
    low_accuracy_warning,
    smallest_reaching,
    summary_text,
    warnings_for,
)


def test_low_accuracy_warning_below_20_percent_only():
    text = low_accuracy_warning(0.0, "capitals")
    assert text is not None and "0% of the capitals rows" in text and "does not do this task" in text
    assert "12%" in low_accuracy_warning(0.125, "t")
    assert low_accuracy_warning(1.0, "t") is None and low_accuracy_warning(0.2, "t") is None
    assert low_accuracy_warning(math.nan, "t") is None and low_accuracy_warning(None, "t") is None
    assert low_accuracy_warning(0.3, "t", floor=0.5) is not None
    assert low_accuracy_warning(0.0, "t", hint="run X").endswith("(run X)")


def test_smallest_reaching_takes_the_smallest_fraction_at_or_above_the_target():
    curve = [
        {"frac": 0.2, "n_edges": 40, "faithfulness": 0.95},
        {"frac": 0.01, "n_edges": 2, "faithfulness": 0.3},
        {"frac": 0.1, "n_edges": 20, "faithfulness": 0.7},  # not monotone: 0.05 reaches, 0.1 does not
        {"frac": 0.05, "n_edges": 10, "faithfulness": 0.8},
    ]
    assert smallest_reaching(curve) == {"n_edges": 10, "frac": 0.05, "faithfulness": 0.8}
    assert smallest_reaching(curve, 0.9)["n_edges"] == 40
    never = smallest_reaching([{"frac": 0.5, "n_edges": 50, "faithfulness": 0.6},
                               {"frac": 0.1, "n_edges": 9, "faithfulness": None}])  # fmt: skip
    assert never["n_edges"] is None and "50%" in never["reason"] and "0.6" in never["reason"]
    assert smallest_reaching(None) is None and smallest_reaching([]) is None


def metrics(**over):
    base = {
        "faithfulness": 0.93, "clean_metric": 0.0, "corrupted_metric": 1.0, "circuit_metric": 0.07,
        "model_accuracy": 0.9, "circuit_accuracy": 0.6, "n_edges": 30, "n_nodes": 9, "n_edges_total": 110,
        "task": "capitals", "model": "m", "method": "EAP", "metric": "logit_diff", "n_examples": 16,
        "data": "caps.csv",
    }  # fmt: skip
    return {**base, **over}


def test_definitions_cover_the_reported_metrics_only():
    d = definitions(metrics())
    for key in ("faithfulness", "model_accuracy", "circuit_accuracy", "n_edges", "metric"):
        assert key in d and d[key].endswith(".")
    assert "kl_recovered_pct" not in d and "random_baseline" not in d and "logit" in d["metric"]
    d = definitions(metrics(metric="kl", kl_recovered_pct=90.0, random_baseline={}))
    assert (
        "KL(P_corrupted || P_model)" in d["kl_recovered_pct"] and "seeded from --seed" in d["random_baseline"]
    )


def test_summary_and_warnings():
    m = add_readings(
        metrics(
            random_baseline={
                "faithfulness_mean": 0.12,
                "faithfulness_std": 0.05,
                "faithfulness_min": 0.05,
                "faithfulness_max": 0.2,
                "n_samples": 3,
                "n_edges_sampled": 33,
                "n_edges_mean": 7.0,
            },
            smallest_80pct={"n_edges": 10, "frac": 0.05, "faithfulness": 0.81},
        )  # fmt: skip
    )
    text = m["summary"]
    assert "30 edges (27.3% of the model's 110 edges)" in text
    assert "recovers 93% of the model's behaviour" in text and "0 = no better than the corrupted run" in text
    assert "a random circuit of the same size recovers 0.12 ± 0.05" in text
    assert "10 edges (top 5% of the edges" in text and "model answers 90%" in text and "alone 60%" in text
    assert m["warnings"] == [] and "warning" not in text and "KL recovered" not in text
    low = add_readings(metrics(model_accuracy=0.0, n_edges=0))
    assert len(low["warnings"]) == 2 and "empty after pruning" in low["warnings"][0]
    assert "circuitft tasks check caps.csv --model m" in low["warnings"][1]
    assert "warning: the model answers only 0%" in low["summary"]
    assert "warning" not in summary_text(low, with_warnings=False)
    assert "undefined" in summary_text(metrics(faithfulness=None))
    assert warnings_for(metrics(model_accuracy=0.2)) == []
