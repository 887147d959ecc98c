"""Reading run folders (no model, graph files loaded only when asked for): circuitft runs and the prior
work's layout.

circuitft run (what ``circuitft fit`` with the CircuitCallback writes)::

    <run>/config.yaml                      model name and the task stream (data.tasks, with steps)
    <run>/circuits/metrics.jsonl           one record per (step, task): accuracies, faithfulness, sizes
                                           (records of failed analyses, with an ``error``, are skipped)
    <run>/circuits/step<SSSSSS>/<task>.safetensors   the scored graph with its circuit
    <run>/circuits/accuracy.jsonl          when present (ForgettingCurve): model accuracy per (step, task)
    <run>/events.out.tfevents.*            TensorBoard: val/<task>/loss and val/<task>/acc

Prior work (robeskins/mech-interp-ft)::

    <run>/checkpoint-<N>/graph.json + metrics.json             one task (the run folder's name)
    <run>/checkpoint-<N>/<task>/graph.json + metrics.json      several tasks per checkpoint

``metrics.json`` keys ``model_accuracy``, ``graph_accuracy`` (circuit accuracy) and
``percentage_performance[_kl]`` (KL faithfulness %, our ``kl_recovered_pct``) are read; others are ignored.
Records written before ``kl_faithfulness_pct`` was renamed ``kl_recovered_pct`` are read under the new name.

**Task ends.** A task ends at the last optimizer step of its stage (cumulative steps of ``data.tasks`` in
``config.yaml``, read with :func:`circuitft.data.schedule.from_config`: every task of a mixed stage ends
where the stage ends; without known steps, the last analysis whose record says it trained the task's stage). "The end of task
i" in every table is the *last analysis at or before that step* in which the task was analysed (the
callback analyses every N steps and at the end, not necessarily exactly at each task end). In the prior
layout, with as many checkpoints as tasks, task i ends at the i-th checkpoint; otherwise only the last task
has an end (the last checkpoint). A folder named ``A__B`` (as ``circuitft sweep`` names pair runs) gives the
stream order A, B.

**Validation scalars.** circuitft logs a validation made after optimizer step s at TensorBoard step s; runs
made before that (Lightning's own logging, with an ``epoch`` scalar) have it at s - 1 and are shifted back,
so the ``val`` table's ``step`` is the optimizer step the weights had.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors import safe_open
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from circuitft.analysis.forgetting import empty_accuracy, read_accuracy
from circuitft.data.schedule import config_stages, from_config
from circuitft.eap.graph import Graph
from circuitft.eap.io import load_graph
from circuitft.errors import CircuitftError, DataError
from circuitft.runconfig import check_run_config
from circuitft.runfolder import RecordLog, RunFolder
from circuitft.safeyaml import read_yaml_file

RECORD_KEYS = ("step", "task", "graph_path")
METRIC_COLUMNS = (
    "model_accuracy",
    "circuit_accuracy",
    "faithfulness",
    "kl_recovered_pct",
    "n_edges",
    "n_nodes",
)
# later additions to a record's metrics (NaN in older records): the denominator and uncertainty of
# faithfulness, the held-out scores, the split-half reliability and MIB's areas
EXTRA_COLUMNS = (
    "metric_gap",
    "faithfulness_se",
    "faithfulness_heldout",
    "kl_recovered_pct_heldout",
    "model_accuracy_heldout",
    "circuit_accuracy_heldout",
    "metric_gap_heldout",
    "split_half_jaccard",
    "cpr",
    "cmd",
)
PRIOR_KEYS = {
    "model_accuracy": ("model_accuracy",),
    "circuit_accuracy": ("graph_accuracy", "circuit_accuracy"),
    "kl_recovered_pct": ("percentage_performance_kl", "percentage_performance", "kl_recovered_pct"),
    "faithfulness": ("normalised_faithfulness",),
}
OLD_NAMES = {"kl_faithfulness_pct": "kl_recovered_pct"}  # names in older metrics.jsonl records
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class RunData:
    """One run: its circuit records as a table, task order and ends, validation scalars, graph files.

    ``tasks`` lists every task in stage order and ``task_ends`` the end of each (the end of its stage, from
    :mod:`circuitft.data.schedule`); ``stages`` the (name, tasks) of each stage (a mixed stage has several).
    ``records`` has one row per (step, task) with ``trained_task``, the :data:`METRIC_COLUMNS` and
    ``graph_file`` (absolute path); ``val`` has ``step``, ``task``, ``loss``, ``acc`` (may be empty);
    ``size_curve`` has ``step``, ``task``, ``fraction``, ``faithfulness``, ... (empty unless recorded);
    ``accuracy`` the forgetting curve's records (:mod:`circuitft.analysis.forgetting`; empty without them).
    """

    path: Path
    name: str
    layout: str  # "circuitft" or "prior"
    model: str
    tasks: list[str]
    task_ends: dict[str, int | None]
    records: pd.DataFrame
    val: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["step", "task", "loss", "acc"]))
    size_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    stages: list[tuple[str, list[str]]] = field(
        default_factory=list
    )  # (stage name, its tasks); empty: one each
    accuracy: pd.DataFrame = field(default_factory=empty_accuracy)  # accuracy.jsonl (the forgetting curve)

    @property
    def stage_groups(self) -> list[tuple[str, list[str]]]:
        """(stage name, tasks) of every stage, in order (each task its own stage when none are recorded)."""
        return self.stages or [(t, [t]) for t in self.tasks]

    def graph(self, step: int, task: str) -> Graph:
        """The scored graph of ``task`` at ``step`` (read from disk on first use, then cached)."""
        rows = self.records[(self.records["step"] == step) & (self.records["task"] == task)]
        if rows.empty:
            raise DataError(f"{self.path}: no circuit of task {task!r} at step {step}")
        return _load(str(rows.iloc[0]["graph_file"]))

    def end_step(self, task: str, of_task: str | None = None) -> int | None:
        """The analysed step that stands for "the end of ``of_task``" (default ``task``) at which ``task``
        was analysed: the last analysis of ``task`` at or before ``of_task``'s last step."""
        end = self.task_ends.get(of_task or task)
        if end is None:
            return None
        steps = self.records.loc[(self.records["task"] == task) & (self.records["step"] <= end), "step"]
        return int(steps.max()) if len(steps) else None

    def value(self, step: int | None, task: str, column: str) -> float:
        """One number of the records (NaN when that step or task was not analysed)."""
        if step is None:
            return math.nan
        rows = self.records[(self.records["step"] == step) & (self.records["task"] == task)]
        return float(rows.iloc[0][column]) if len(rows) else math.nan

    def val_value(self, step: int | None, task: str, column: str) -> float:
        """A validation scalar at an optimizer step (NaN when not logged there)."""
        if step is None or self.val.empty:
            return math.nan
        rows = self.val[(self.val["step"] == step) & (self.val["task"] == task)]
        return float(rows.iloc[-1][column]) if len(rows) else math.nan


@lru_cache(maxsize=8)
def _load(path: str) -> Graph:
    return load_graph(path)


# ---- discovery ------------------------------------------------------------------------------------------
def run_kind(folder: Path) -> str | None:
    """``circuitft``, ``prior`` or None (not a run folder)."""
    if RunFolder(folder).records.is_file():
        return "circuitft"
    if any(CHECKPOINT.match(p.name) and p.is_dir() for p in folder.iterdir()):
        return "prior"
    return None


def find_runs(folders: list[Path]) -> list[Path]:
    """Every run folder among ``folders`` and (for a sweep) their sub-folders; one-line errors otherwise."""
    found: list[Path] = []
    for folder in folders:
        if not folder.exists():
            raise DataError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder (give a run folder or a sweep folder)")
        if run_kind(folder):
            found.append(folder)
            continue
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        runs = [p for p in subs if run_kind(p)]
        if not runs:
            what = "an empty folder" if not any(folder.iterdir()) else "not a run folder"
            raise DataError(
                f"{folder}: {what}: no circuits/metrics.jsonl (a circuitft run with the CircuitCallback), "
                "no checkpoint-<N>/ folders (the prior work's layout) and no run folders under it (a sweep)"
            )
        found += runs
    return found


def read_run(folder: Path) -> RunData:
    """Read one run folder of either layout."""
    kind = run_kind(folder)
    if kind == "circuitft":
        return _read_circuitft(folder)
    if kind == "prior":
        return _read_prior(folder)
    raise DataError(f"{folder}: not a run folder (no circuits/metrics.jsonl, no checkpoint-<N>/ folders)")


# ---- circuitft layout -----------------------------------------------------------------------------------
def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a bad line raises naming the file and the line."""
    rows = []
    for n, rec in RecordLog(path).objects():
        if rec.get("error"):  # a failed analysis: recorded, but it has no numbers and no graph
            continue
        for key in RECORD_KEYS:
            if key not in rec:
                raise DataError(f"{path}: line {n}: missing key {key!r}")
        if isinstance(rec["step"], bool) or not isinstance(rec["step"], int) or rec["step"] < 0:
            raise DataError(f"{path}: line {n}: 'step' must be a non-negative integer, got {rec['step']!r}")
        metrics = rec.get("metrics", {})
        if not isinstance(metrics, dict):
            raise DataError(f"{path}: line {n}: 'metrics' must be an object")
        for k, v in metrics.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise DataError(f"{path}: line {n}: metric {k!r} must be a number, got {v!r}")
        rec["_line"] = n
        rows.append(rec)
    if not rows:
        raise DataError(f"{path}: no usable records (the run has not analysed any circuit yet)")
    return rows


def _read_config(folder: Path) -> dict[str, Any]:
    path = RunFolder(folder).config
    if not path.is_file():
        return {}
    try:
        cfg = read_yaml_file(path) or {}
    except CircuitftError as err:
        raise DataError(str(err)) from None
    cfg = cfg if isinstance(cfg, dict) else {}
    check_run_config(cfg, path)
    return cfg


def _read_circuitft(folder: Path) -> RunData:
    log = RunFolder(folder).records
    recs = read_records(log)
    cfg = _read_config(folder)
    plan = from_config(cfg)
    rows, curves = [], []
    for rec in recs:
        graph_file = (log.parent / str(rec["graph_path"])).resolve()
        m = _renamed(rec.get("metrics") or {})
        row = {
            "step": rec["step"],
            "task": str(rec["task"]),
            "trained_task": str(rec.get("trained_task", "")),
        }
        row.update({c: _num(m.get(c)) for c in METRIC_COLUMNS + EXTRA_COLUMNS})
        row["n_examples"] = _num(rec.get("n_examples"))
        row["n_examples_heldout"] = _num(m.get("n_examples_heldout", rec.get("n_examples_heldout")))
        row["graph_file"] = str(graph_file)
        rows.append(row)
        for frac, point in (rec.get("size_curve") or {}).items():
            if isinstance(point, dict):
                curves.append(
                    {
                        "step": rec["step"],
                        "task": str(rec["task"]),
                        "fraction": float(frac),
                        **{k: _num(v) for k, v in _renamed(point).items()},
                    }
                )
    records = pd.DataFrame(rows).sort_values(["step", "task"], kind="stable").reset_index(drop=True)
    stages = [(name, list(group)) for name, group in zip(plan.stages, plan.tasks, strict=True)]
    if not stages:  # no config: the stages the records say were trained, then the other tasks
        for rec in sorted(recs, key=lambda r: r["step"]):
            group = _trained(rec)
            if group and all(t not in g for _, g in stages for t in group):
                stages.append((str(rec.get("trained_task") or "+".join(group)), group))
        known = {t for _, g in stages for t in g}
        stages += [(t, [t]) for t in dict.fromkeys(records["task"]) if t not in known]
    names = [t for _, g in stages for t in g]
    ends: dict[str, int | None] = {}
    if plan.stages and all(st.get("steps") is not None for st in config_stages(cfg)):
        ends = plan.task_ends()  # an ``epochs`` stage's steps depend on rows the config may not give
    else:  # the last analysis whose record says it trained the task's stage
        trained_at = [(rec["step"], set(_trained(rec))) for rec in recs]
        for _, group in stages:
            steps = [step for step, tr in trained_at if tr & set(group)]
            for name in group:
                ends[name] = max(steps) if steps else None
    model = str(((cfg.get("model") or {}).get("model")) or _graph_shape(records))
    return RunData(
        folder,
        folder.name,
        "circuitft",
        model,
        names,
        ends,
        records,
        _read_val(folder),
        pd.DataFrame(curves),
        stages,
        read_accuracy(folder),
    )


def _trained(rec: dict[str, Any]) -> list[str]:
    """The tasks a record says were trained at its step (``trained_tasks``; older records: ``trained_task``)."""
    group = rec.get("trained_tasks")
    if isinstance(group, list) and group:
        return [str(t) for t in group]
    return [str(rec["trained_task"])] if rec.get("trained_task") else []


def _graph_shape(records: pd.DataFrame) -> str:
    """A model label from the first graph file's shape (when config.yaml names none)."""
    try:
        with safe_open(str(records.iloc[0]["graph_file"]), framework="pt") as f:
            cfg = json.loads((f.metadata() or {}).get("cfg", "{}"))
        return f"{cfg.get('n_layers')} layers x {cfg.get('n_heads')} heads"
    except Exception:  # noqa: BLE001 - only a label
        return "unknown model"


def _read_val(folder: Path) -> pd.DataFrame:
    """``val/<task>/loss`` and ``val/<task>/acc`` from the run's TensorBoard events (older runs shifted by +1)."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    empty = pd.DataFrame(columns=["step", "task", "loss", "acc"])
    if not files:
        return empty

    values: dict[tuple[int, str], dict[str, float]] = {}
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception as err:  # noqa: BLE001 - a corrupt event file
            raise DataError(f"{path}: unreadable TensorBoard event file ({err})") from None
        shift = 1 if "epoch" in acc.Tags().get("scalars", []) else 0  # older runs: Lightning's step - 1
        for tag in acc.Tags().get("scalars", []):
            parts = tag.split("/")
            if len(parts) != 3 or parts[0] != "val" or parts[2] not in ("loss", "acc"):
                continue
            for ev in acc.Scalars(tag):
                values.setdefault((ev.step + shift, parts[1]), {})[parts[2]] = float(ev.value)
    if not values:
        return empty
    rows = [
        {"step": s, "task": t, "loss": v.get("loss", math.nan), "acc": v.get("acc", math.nan)}
        for (s, t), v in sorted(values.items())
    ]
    return pd.DataFrame(rows)


# ---- prior layout ---------------------------------------------------------------------------------------
def _read_prior(folder: Path) -> RunData:
    checkpoints = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()
    )
    rows = []
    for step, ck in checkpoints:
        if (ck / "graph.json").is_file() or (ck / "metrics.json").is_file():
            entries = [(folder.name, ck)]
        else:
            entries = [
                (p.name, p) for p in sorted(ck.iterdir()) if p.is_dir() and (p / "graph.json").is_file()
            ]
        for task, where in entries:
            if not (where / "graph.json").is_file():
                raise DataError(f"{where}: metrics.json without graph.json")
            row = {"step": step, "task": task, "trained_task": ""}
            row.update(_prior_metrics(where / "metrics.json"))
            row["graph_file"] = str((where / "graph.json").resolve())
            rows.append(row)
    if not rows:
        raise DataError(f"{folder}: checkpoint-<N>/ folders without graph.json files")
    records = pd.DataFrame(rows).sort_values(["step", "task"], kind="stable").reset_index(drop=True)
    present = list(dict.fromkeys(records["task"]))
    parts = folder.name.split("__")
    names = parts if sorted(parts) == sorted(present) else present
    steps = [s for s, _ in checkpoints]
    if len(steps) == len(names) and len(names) > 1:
        ends: dict[str, int | None] = dict(zip(names, steps, strict=True))
    else:
        ends = {n: None for n in names}
        ends[names[-1]] = steps[-1]
    return RunData(folder, folder.name, "prior", _prior_model(records), names, ends, records)


def _renamed(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with keys of older records under their current names (a current key wins)."""
    out = {OLD_NAMES.get(k, k): v for k, v in metrics.items() if k in OLD_NAMES}
    return {**out, **{k: v for k, v in metrics.items() if k not in OLD_NAMES}}


def _prior_metrics(path: Path) -> dict[str, float]:
    out = {c: math.nan for c in METRIC_COLUMNS + EXTRA_COLUMNS}
    if not path.is_file():
        return out
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object")
    for col, keys in PRIOR_KEYS.items():
        for k in keys:
            if k in d:
                v = d[k]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise DataError(f"{path}: {k!r} must be a number, got {v!r}")
                out[col] = _num(v)
                break
    return out


def _prior_model(records: pd.DataFrame) -> str:
    """A model label from the first graph.json's cfg (read as a stream: the file can be large)."""
    path = Path(records.iloc[0]["graph_file"])
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
        m = re.search(r'"cfg"\s*:\s*(\{[^}]*\})', head)
        cfg = json.loads(m.group(1)) if m else {}
        return f"{cfg.get('n_layers')} layers x {cfg.get('n_heads')} heads" if cfg else "unknown model"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unknown model"


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)
