"""The report: the prior work's analysis of runs as one static page (``circuitft report`` prints it).

Reads run folders (circuitft runs or the prior work's ``checkpoint-<N>/graph.json`` layout; a folder of
runs, such as a sweep's ``root_dir``, stands for all runs under it), never loads a model, and writes::

    DIR/index.html           summary, figures with a one-line caption each, tables (opens offline from disk)
    DIR/explorer.html        the interactive circuit explorer, data embedded (explorer_<run>.html per run
                             when the report holds several runs)
    DIR/figures/*.png, *.svg every figure in both formats
    DIR/tables/circuits.csv           one row per (run, step, task)
    DIR/tables/accuracy_matrix.csv    R[i][j] per run and metric, the untuned row as after = "untuned"
    DIR/tables/continual.csv          ACC, BWT, FWT, forgetting per run and metric
    DIR/tables/overlap.csv            cross-task edge Jaccard and node IoU (also at matched density) at each
                                      run's final step, each with its chance level (*_chance) and
                                      chance-corrected value (*_corrected)
    DIR/tables/change_first_last.csv  edge and node change from each task's first to last analysis (with
                                      chance levels and change / chance)
    DIR/tables/size_curve.csv         when the runs recorded circuit-size curves
    DIR/tables/pairs.csv, DIR/fit.json   with two or more pair runs (two-task streams): the sweep headline
                                      (fits with intervals, permutation p and a verdict per variant)
    DIR/tables/forgetting_curve.csv   with those, when the runs recorded forgetting curves: A's accuracy
                                      from the end of A to the end of B, one row per point

Everything is written to a temporary folder next to ``DIR`` and moved into place at the end, so a failure
leaves no half-written report (an existing report at ``DIR`` is replaced only then). ``DIR`` is replaced
only when it is empty or a report circuitft wrote (its ``.circuitft`` marker, :mod:`circuitft.owned`); a
folder with other files, or one holding a run being reported, is refused before any work. Per-run figure
sections are drawn for at most ``--max_run_sections`` runs (default 4); beyond that (a sweep) only the sweep
figures and all tables.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from circuitft.analysis.continual import accuracy_matrix, stage_columns, summaries
from circuitft.analysis.runs import RunData, find_runs, read_run
from circuitft.analysis.sweep import fit_all, forgetting_curve_table, pairs_table
from circuitft.analysis.tables import (
    FIRST_LAST_COLUMNS,
    OVERLAP_COLUMNS,
    circuits_table,
    first_to_last,
    overlap_matrices,
    overlap_table,
)
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.errors import ConfigError
from circuitft.explorer.page import links_html, write_explorers
from circuitft.files import atomic_folder, atomic_write_text
from circuitft.limits import check_utf8_path
from circuitft.owned import check_not_around, check_owned, mark
from circuitft.plots import forgetting_curves
from circuitft.report import page as html
from circuitft.report.options import ReportOptions

METRICS = ("model_accuracy", "circuit_accuracy", "faithfulness", "kl_recovered_pct", "val_acc")
CURVE_CAPTION = (
    "Forgetting curves: A's model accuracy on its held-out rows from the end of A (0) to the end of B (1), "
    "one line per pair, coloured by A; forgetting_auc (tables/pairs.csv) is the mean drop below the first "
    "point, fitted against the overlap as fit.json's auc variant."
)


def read_runs(paths: list[Path], out: Path) -> list[RunData]:
    """The runs under ``paths`` (a folder of runs stands for each run in it), after refusing an ``out`` that
    would replace one of them or that is not circuitft's report; names made unique (qualified by parent)."""
    check_not_around(out, paths, "--out")
    folders = find_runs(list(paths))
    check_not_around(out, folders, "--out")  # a run found under a folder of runs
    for folder in folders:  # a run found under a folder of runs, whose name the locale cannot decode
        check_utf8_path(folder, "run folder")
    check_out(out)
    runs = [read_run(folder) for folder in folders]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # the same folder name under two sweeps: qualify with the parent
        for r in runs:
            r.name = f"{r.path.parent.name}/{r.name}"
    return runs


def write_report(runs: list[RunData], out: Path, options: ReportOptions) -> dict[str, Any]:
    """Build the report of ``runs`` in a temporary folder and move it to ``out`` as a whole (an earlier
    report there is replaced); returns :func:`build_report`'s counts and warnings."""
    summary: dict[str, Any] = {}

    def write(folder: Path) -> None:
        mark(folder, "report")  # what lets a later report replace this folder
        summary.update(
            build_report(
                runs,
                folder,
                threshold=options.threshold,
                max_run_sections=options.max_run_sections,
                max_edges=options.max_edges,
                top_frac=options.top_frac,
            )
        )

    atomic_folder(write, out, option="--out", replace=True)  # an earlier report is replaced as a whole
    return summary


def check_out(out: Path) -> None:
    """Refuse an --out that is a file, a folder that is not circuitft's report, or not writable."""
    check_owned(out, "report", "--out", what="replace")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create its parent folder ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        raise ConfigError(f"--out {out}: not writable")


def build_report(
    runs: list[RunData],
    out: Path,
    *,
    threshold: float = 0.8,
    max_run_sections: int = 4,
    max_edges: int = 300,
    top_frac: float = DEFAULT_TOP_FRAC,
) -> dict[str, Any]:
    """Write every figure, table and the page of ``runs`` into ``out``; returns counts and warnings."""
    (out / "figures").mkdir(parents=True)
    (out / "tables").mkdir()
    page = html.Page(title="circuitft report")
    page.top = f"top-{100 * top_frac:g}%"
    warnings: list[str] = []
    circuits, matrices, continual, overlaps, changes, curves = [], [], [], [], [], []
    per_run: list[dict[str, Any]] = []
    for run in runs:
        table = circuits_table(run, frac=top_frac)
        circuits.append(table)
        info: dict[str, Any] = {"run": run, "table": table, "matrices": {}, "summaries": {}}
        for metric in METRICS:
            r, b = accuracy_matrix(run, metric)
            s = summaries(r, b, stage_columns(run))
            info["matrices"][metric], info["summaries"][metric] = (r, b), s
            matrices.append(_long_matrix(run.name, metric, r, b))
            continual.append({"run": run.name, "metric": metric, **s})
        step, edge, node = overlap_matrices(run, frac=top_frac)
        info["overlap"] = (step, edge, node)
        ov = overlap_table(run, step, frac=top_frac)
        info["overlap_table"] = ov
        overlaps.append(ov)
        fl = first_to_last(table)
        info["first_last"] = fl
        changes.append(fl.assign(run=run.name))
        if not run.size_curve.empty:
            curves.append(run.size_curve.assign(run=run.name))
        per_run.append(info)
    models = list(dict.fromkeys(r.model for r in runs))
    if len(models) > 1:
        warnings.append(
            f"runs of {len(models)} different models ({', '.join(models)}): shown in separate panels"
        )
    pairs = pairs_table(runs, threshold, frac=top_frac)
    is_sweep = len(pairs) >= 2
    fits = fit_all(pairs, threshold) if is_sweep else None

    tables = {
        "circuits": pd.concat(circuits, ignore_index=True),
        "accuracy_matrix": pd.concat(matrices, ignore_index=True),
        "continual": pd.DataFrame(continual),
        "overlap": pd.concat(overlaps, ignore_index=True)
        if overlaps
        else pd.DataFrame(columns=OVERLAP_COLUMNS),
        "change_first_last": pd.concat(changes, ignore_index=True)[["run", *FIRST_LAST_COLUMNS]],
    }
    if curves:
        tables["size_curve"] = pd.concat(curves, ignore_index=True)
    if is_sweep:
        tables["pairs"] = pairs
    curve = forgetting_curve_table(runs) if is_sweep else pd.DataFrame()
    if len(curve):
        tables["forgetting_curve"] = curve
    for name, table in tables.items():
        _write_csv(table, out / "tables" / f"{name}.csv")
    if fits is not None:
        atomic_write_text(out / "fit.json", json.dumps(fits, indent=2, default=_json_default) + "\n")

    page.summary(runs, models, per_run, fits, warnings)
    page.parts.append(links_html(write_explorers(runs, out)))
    if is_sweep:
        html.sweep_section(page, out, pairs, fits, models)
    if len(curve):  # the forgetting curves (circuitft.analysis.forgetting); their fit is fit.json's "auc"
        page.figure(out, forgetting_curves(curve), "sweep_forgetting_curves", CURVE_CAPTION)
    for info in per_run[:max_run_sections]:
        html.run_section(page, out, info, max_edges=max_edges)
    if len(per_run) > max_run_sections:
        page.note(
            f"Per-run figures are drawn for the first {max_run_sections} of {len(per_run)} runs "
            "(--max_run_sections); every run is in the tables."
        )
    page.tables(tables, fits)
    page.write(out / "index.html")
    return {"figures": page.n_figures, "tables": len(tables), "warnings": warnings, "fits": fits}


def _long_matrix(run: str, metric: str, r: pd.DataFrame, b: pd.Series) -> pd.DataFrame:
    rows = [{"run": run, "metric": metric, "after": "untuned", "task": j, "value": b[j]} for j in r.columns]
    rows += [
        {"run": run, "metric": metric, "after": i, "task": j, "value": r.loc[i, j]}
        for i in r.index
        for j in r.columns
    ]
    return pd.DataFrame(rows)


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, table.to_csv(index=False, float_format="%.10g"))


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
