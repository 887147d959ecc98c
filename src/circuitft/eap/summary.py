"""Plain-language reading of circuit results: definitions, a short summary, warnings, the 80% point.

Pure functions of the numbers in ``metrics.json`` (no model, no torch), shared by ``circuitft circuit``
and anything else that reports a circuit (the CircuitCallback can call :func:`low_accuracy_warning`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ACCURACY_FLOOR = 0.2  # below this model accuracy the model does not do the task
FAITHFULNESS_TARGET = 0.8  # "the smallest circuit reaching 80% faithfulness"
MIN_ROWS = 20  # an accuracy on fewer rows is flagged where it is printed (one row moves it by > 5 points)
# faithfulness whose standard error over the rows exceeds this (95% interval wider than about +-0.2) rests on
# a clean-corrupted gap too small against the row-to-row spread to mean much
SE_LIMIT = 0.1

METRIC_MEANING = {
    "kl": "KL divergence of the run's next-token distribution from the full model's on the clean prompt, "
    "averaged over the answer positions (0 for the full model)",
    "logit_diff": "logit of the answer minus logit of the wrong answer at their first differing token",
    "prob_diff": "probability of the answer minus probability of the wrong answer at their first differing "
    "token",
    "logprob": "mean log-probability of the answer tokens",
}

_DEFINITIONS = {
    "faithfulness": "Normalised faithfulness (circuit - corrupted) / (clean - corrupted) of the mean task metric: "
    "how much of the full model's behaviour on this task the circuit alone recovers when every edge outside "
    "it carries its activation from the corrupted prompt (1 = all of it, 0 = no better than the corrupted "
    "run; it can leave [0, 1]).",
    "kl_recovered_pct": "Only with --metric kl: 100 (1 - |B - C| / B), B = mean KL(P_corrupted || P_model), "
    "C = mean KL(P_corrupted || P_circuit) over the answer positions: how much of the full model's "
    "divergence from the corrupted run the circuit reproduces, in percent (100 = all; the 'KL faithfulness "
    "percentage' of earlier fine-tuning circuit studies; it measures distance from the corrupted run, not "
    "the task metric, so it can disagree with 'faithfulness').",
    "clean_metric": "Mean task metric of the full model on the clean prompts.",
    "metric_gap": "|clean_metric - corrupted_metric|: the denominator of faithfulness. Near 0 the clean and "
    "corrupted runs hardly differ and faithfulness is a ratio of small numbers.",
    "faithfulness_se": "Standard error of faithfulness over the rows (delta method for a ratio of means); a "
    "warning names a circuit whose faithfulness_se exceeds 0.1: its gap is too small against the "
    "row-to-row spread for faithfulness to mean much.",
    "faithfulness_heldout": "faithfulness of the same circuit on held-out rows that took no part in finding it "
    "(n_examples_heldout rows; null without held-out rows).",
    "kl_recovered_pct_heldout": "kl_recovered_pct on the held-out rows.",
    "model_accuracy_heldout": "model_accuracy on the held-out rows.",
    "circuit_accuracy_heldout": "circuit_accuracy on the held-out rows.",
    "metric_gap_heldout": "metric_gap on the held-out rows.",
    "n_examples_heldout": "Held-out rows the circuit was scored on (0: none).",
    "cpr": "MIB's CPR: area under faithfulness against the fraction of edges kept, by the trapezoid rule over "
    "0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100% (higher is better).",
    "cmd": "MIB's CMD: area between the same curve and 1, the trapezoid rule over |1 - faithfulness| "
    "(lower is better).",
    "corrupted_metric": "Mean task metric of the full model on the corrupted prompts.",
    "circuit_metric": "Mean task metric of the circuit (clean prompt, edges outside the circuit corrupted).",
    "model_accuracy": "Share of rows the full model answers correctly on the clean prompt (greedy, every "
    "answer token must be the top prediction; 'first_token' accuracy checks the first only).",
    "circuit_accuracy": "Share of rows the circuit alone answers correctly, scored as model_accuracy.",
    "n_edges": "Edges in the circuit after pruning (edges not on an input -> logits path are dropped).",
    "n_nodes": "Nodes (attention heads, MLPs, input) in the circuit, without the logits node.",
    "n_edges_total": "Edges of the model's whole graph (the 100% of the size percentages).",
    "random_baseline": "Faithfulness of random circuits of the same requested size: each sample draws "
    "n_edges_sampled edges uniformly without replacement from the graph's real edges (torch.randperm with "
    "a generator seeded from --seed, one draw per sample in order), prunes them as the real selection is "
    "pruned and is evaluated on the same rows (n_edges_mean: mean size after pruning; std is the sample "
    "standard deviation, 0 for one sample).",
    "size_curve": "Faithfulness of the circuits of the top fraction 'frac' of edges by |score| (pruned, "
    "as the main circuit), evaluated on the same rows; with --size_curve auto (the default) the main "
    "circuit is a point (main: true) and only the fractions on the side that decides the 80% point are "
    "evaluated: smaller ones if the main circuit reaches 0.8, larger ones if not.",
    "smallest_80pct": "The smallest circuit of the size curve whose faithfulness reaches 0.8 (null with a "
    "reason when none does); its resolution is that of the curve's fractions.",
    "warnings": "Problems with these results that a reader should know (e.g. the model does not do the task).",
}


def definitions(metrics: Mapping[str, Any]) -> dict[str, str]:
    """One sentence per metric present in ``metrics`` (and the task metric's meaning under ``metric``)."""
    out = {k: v for k, v in _DEFINITIONS.items() if k in metrics}
    metric = metrics.get("metric")
    if metric in METRIC_MEANING:
        out["metric"] = f"Task metric {metric}: {METRIC_MEANING[metric]}."
    return out


def low_accuracy_warning(
    accuracy: float | None, task: str, floor: float = ACCURACY_FLOOR, hint: str | None = None
) -> str | None:
    """A one-line warning when the model's accuracy on ``task``'s rows is below ``floor`` (else None);
    ``hint`` (e.g. what to run next) is appended in brackets."""
    if accuracy is None or not math.isfinite(accuracy) or accuracy >= floor:
        return None
    tail = f" ({hint})" if hint else ""
    return (
        f"the model answers only {100 * accuracy:.0f}% of the {task} rows correctly (< {100 * floor:.0f}%): "
        f"it does not do this task, so a circuit for it says little{tail}"
    )


def small_gap_warning(metrics: Mapping[str, Any], what: str, limit: float = SE_LIMIT) -> str | None:
    """A one-line warning when ``faithfulness_se`` of ``metrics`` exceeds ``limit`` (else None): the
    clean-corrupted ``metric_gap`` is too small against the row-to-row spread; ``what`` names the analysis."""
    se, gap, f = metrics.get("faithfulness_se"), metrics.get("metric_gap"), metrics.get("faithfulness")
    if not _finite(se) or se <= limit or not _finite(gap) or not _finite(f):
        return None
    return (
        f"{what}: faithfulness {f:.2f} ± {1.96 * se:.2f} (95%, over the rows) rests on a clean-corrupted gap of "
        f"only {gap:.3g} ({metrics.get('metric')}) against the row-to-row spread, so it says little"
    )


def rows_note(n: Any) -> str:
    """``n=32 rows``, flagged when under :data:`MIN_ROWS` (``n=3 rows, too few for a stable accuracy``)."""
    if not _finite(n):
        return "n=? rows"
    flag = f", fewer than {MIN_ROWS}: one row moves it by {100 / n:.0f} points" if 0 < n < MIN_ROWS else ""
    return f"n={int(n)} rows{flag}"


def smallest_reaching(
    curve: Sequence[Mapping[str, Any]] | None, target: float = FAITHFULNESS_TARGET
) -> dict[str, Any] | None:
    """The first point (by ``frac``) of ``curve`` whose ``faithfulness`` is at least ``target``.

    Returns ``{n_edges, frac, faithfulness}``, or ``{..: None, "reason": ...}`` when no point reaches it;
    None when there is no curve."""
    if not curve:
        return None
    points = sorted(curve, key=lambda p: p["frac"])
    for p in points:
        f = p.get("faithfulness")
        if f is not None and math.isfinite(f) and f >= target:
            return {"n_edges": p["n_edges"], "frac": p["frac"], "faithfulness": f}
    largest = points[-1]
    best = max((p["faithfulness"] for p in points if _finite(p.get("faithfulness"))), default=None)
    best_text = "no finite value" if best is None else f"the best is {best:.3g}"
    return {
        "n_edges": None,
        "frac": None,
        "faithfulness": None,
        "reason": f"no circuit of the size curve (up to {_pct(largest['frac'])} of the edges) reaches "
        f"{target:g} faithfulness; {best_text}",
    }


def warnings_for(metrics: Mapping[str, Any]) -> list[str]:
    """The warnings a reader of ``metrics`` needs: an empty circuit, a model that does not do the task."""
    out = []
    if not metrics.get("n_edges"):
        out.append(
            "the circuit is empty after pruning (no selected edge lies on an input->logits path); "
            "try a larger --top_n / --top_frac or --greedy_n"
        )
    hint = None
    if metrics.get("data") and metrics.get("model"):
        hint = (
            f"to look for answers missing their leading space, run: circuitft tasks check {metrics['data']} "
            f"--model {metrics['model']}"
        )
    low = low_accuracy_warning(metrics.get("model_accuracy"), str(metrics.get("task", "task")), hint=hint)
    if low:
        out.append(low)
    gap = small_gap_warning(metrics, f"task {metrics.get('task')}")
    if gap:
        out.append(gap)
    return out


def add_readings(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``warnings``, ``definitions`` and ``summary`` to ``metrics`` (in place); returns it."""
    metrics["warnings"] = warnings_for(metrics)
    metrics["definitions"] = definitions(metrics)
    metrics["summary"] = summary_text(metrics)
    return metrics


def summary_text(metrics: Mapping[str, Any], with_warnings: bool = True) -> str:
    """A few lines for a newcomer: size, faithfulness and its meaning, baselines, accuracies, and (with
    ``with_warnings``) the ``warnings`` of ``metrics``."""
    n, total = metrics.get("n_edges") or 0, metrics.get("n_edges_total") or 0
    share = f" ({100 * n / total:.1f}% of the model's {total} edges)" if total else ""
    lines = [
        f"Circuit for task {metrics.get('task')} ({metrics.get('model')}, {metrics.get('method')}, metric "
        f"{metrics.get('metric')}, {metrics.get('n_examples')} rows):",
        f"  size: {n} edges{share}, {metrics.get('n_nodes')} nodes",
    ]
    f = metrics.get("faithfulness")
    gap = metrics.get("metric_gap")
    se = metrics.get("faithfulness_se")
    gap_text = f" ± {1.96 * se:.2g} (95%)" if _finite(se) else ""
    gap_text += f", clean-corrupted gap {gap:.3g}" if _finite(gap) else ""
    if _finite(f):
        lines.append(
            f"  faithfulness {f:.3g}{gap_text}: the circuit alone recovers {100 * f:.0f}% of the model's "
            "behaviour on this task (1.0 = all of it, 0 = no better than the corrupted run)"
        )
    else:
        lines.append("  faithfulness undefined: the clean and corrupted runs score the same on this metric")
    kl = metrics.get("kl_recovered_pct")
    if _finite(kl):
        lines.append(
            f"  KL recovered {kl:.1f}%: the circuit reproduces this share of the model's KL divergence from "
            "the corrupted run (the older KL percentage; see definitions)"
        )
    base = metrics.get("random_baseline")
    if base and _finite(base.get("faithfulness_mean")):
        lines.append(
            f"  a random circuit of the same size recovers {base['faithfulness_mean']:.3g} ± "
            f"{base['faithfulness_std']:.2g} (min {base['faithfulness_min']:.3g}, max "
            f"{base['faithfulness_max']:.3g}; {base['n_samples']} samples of {base['n_edges_sampled']} edges, "
            f"{base['n_edges_mean']:.0f} after pruning)"
        )
    small = metrics.get("smallest_80pct")
    if small:
        if small.get("n_edges") is not None:
            lines.append(
                f"  smallest circuit reaching {FAITHFULNESS_TARGET:g} faithfulness: {small['n_edges']} edges "
                f"(top {_pct(small['frac'])} of the edges; faithfulness {small['faithfulness']:.3g})"
            )
        else:
            lines.append(
                f"  smallest circuit reaching {FAITHFULNESS_TARGET:g} faithfulness: none ({small['reason']})"
            )
    acc, circ = metrics.get("model_accuracy"), metrics.get("circuit_accuracy")
    if _finite(acc) and _finite(circ):
        kind = "first answer token" if metrics.get("accuracy") == "first_token" else "exact match"
        lines.append(
            f"  accuracy ({kind}): the model answers {100 * acc:.0f}% of the rows correctly, the circuit alone "
            f"{100 * circ:.0f}%"
        )
    if _finite(acc) and _finite(circ):
        lines[-1] += f" ({rows_note(metrics.get('n_examples'))})"
    lines += _heldout_lines(metrics)
    cpr, cmd = metrics.get("cpr"), metrics.get("cmd")
    if _finite(cpr) and _finite(cmd):
        lines.append(f"  MIB: CPR {cpr:.3g} (area under faithfulness over edge fractions), CMD {cmd:.3g}")
    if with_warnings:
        lines += [f"  warning: {w}" for w in metrics.get("warnings") or ()]
    return "\n".join(lines)


def _heldout_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The held-out scores, or a note that faithfulness and accuracy are in-sample."""
    n = metrics.get("n_examples_heldout")
    if not _finite(n) or not n:
        return (
            ["  held-out: none (the numbers above are on the rows that found the circuit)"] if n == 0 else []
        )
    f, acc, circ = (
        metrics.get(f"{k}_heldout") for k in ("faithfulness", "model_accuracy", "circuit_accuracy")
    )
    gap = metrics.get("metric_gap_heldout")
    parts = [f"faithfulness {f:.3g}" if _finite(f) else "faithfulness undefined"]
    if _finite(gap):
        parts[-1] += f" (gap {gap:.3g})"
    if _finite(acc) and _finite(circ):
        parts.append(f"accuracy model {100 * acc:.0f}%, circuit {100 * circ:.0f}%")
    return [f"  held-out ({rows_note(n)} not used to find it): " + ", ".join(parts)]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pct(frac: float) -> str:
    return f"{100 * frac:.3g}%"


__all__ = [
    "ACCURACY_FLOOR",
    "FAITHFULNESS_TARGET",
    "add_readings",
    "definitions",
    "low_accuracy_warning",
    "rows_note",
    "small_gap_warning",
    "smallest_reaching",
    "summary_text",
    "warnings_for",
]
