"""Shared stream prefixes: runs whose task streams start with the same stages train those stages once.

Two runs share a prefix of ``k`` stages when their fit configs agree on everything but the stages after the
``k``-th (model, options, seed, callbacks, and the first ``k`` stages with their steps, data and seeds).
With a fresh optimizer per stage and batches that are a pure function of the seed and the position, the
first ``k`` stages of every such run are the same computation, so the sweep trains them once, in a prefix
folder ``<root>/.prefixes/<stages>-<hash>``, and starts each run from the prefix's checkpoint at its last step
(:func:`fork`): the checkpoint is rewritten for the run's stream, the circuit records and graphs of the steps
up to the prefix's end are copied, and the run resumes there with ``--ckpt_path last``. The result is the
uninterrupted run's (tested: adapter weights, circuit graphs and records equal).

The circuit callback of a run may analyse tasks it has not trained yet (``tasks: all`` or a list: B's circuit
at the end of A, the prospective overlap). A prefix therefore also builds the rows of those tasks
(``data.analysis_tasks``, each with the seed it has in its run) and analyses them with its own, once for all
the runs that continue from it. A prefix is shared only where those tasks agree between its runs (same name,
same rows); elsewhere the runs train from a shorter shared prefix, or from scratch. Runs with an ``epochs``
stage (their steps depend on the data) never share.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from circuitft.data.schedule import config_stages, stage_tasks
from circuitft.eap.settings import CROSS_TASK_AUTO
from circuitft.files import atomic_write, atomic_write_text
from circuitft.owned import mark
from circuitft.runfolder import RunFolder
from circuitft.sweeps.plan import CALLBACK, run_config

PREFIXES = ".prefixes"  # under the sweep's root folder; hidden from `circuitft report` (not a run)
TASK_FIELDS = ("task", "params", "source", "n_train", "n_val", "n_test", "seed", "name")
STREAM_STATE = "TaskStreamDataModule"  # the data module's key in a Lightning checkpoint


class PrefixIncomplete(RuntimeError):
    """A shared prefix that stopped before its last step: its runs train from scratch."""


@dataclass
class Prefix:
    """A stream prefix shared by several runs of a sweep, trained once in its own folder."""

    name: str  # folder name under <root>/.prefixes/
    key: str  # what the runs sharing it agree on (canonical JSON)
    stages: list[dict[str, Any]]
    end: int  # its last optimizer step
    runs: list[str]  # the runs that continue from it, directly or through a longer prefix
    args: list[str]  # fit arguments (one member run's, with extra) before the prefix's own config file
    extras: list[dict[str, Any]] = field(default_factory=list)  # data.analysis_tasks
    cross: list[str] | None = None  # cross_task for the prefix's callback (None: the automatic choice works)
    callbacks: list[Any] | None = None  # the fit config's callbacks (rewritten when ``cross`` is set)
    parent: Prefix | None = None

    @property
    def depth(self) -> int:
        return len(self.stages)

    def stage_names(self) -> list[str]:
        return ["+".join(stage_tasks(s)) for s in self.stages]

    def folder(self, root: Path) -> Path:
        return Path(root) / PREFIXES / self.name

    def config(self) -> dict[str, Any]:
        """The prefix's own fit config (given after the run's arguments): its stages and analysis tasks."""
        cfg: dict[str, Any] = {"data": {"tasks": self.stages, "analysis_tasks": self.extras}}
        if self.cross is not None and self.callbacks is not None:
            callbacks = json.loads(json.dumps(self.callbacks))
            for cb in callbacks:
                if _is_circuit_callback(cb):
                    cb.setdefault("init_args", {})["cross_task"] = self.cross if self.cross else False
            cfg["trainer"] = {"callbacks": callbacks}
        return cfg

    def as_stream(self) -> RunStream:
        """The prefix seen as a run (its stages, then its analysis tasks), to start it from its parent."""
        cfg = json.loads(self.key)
        cfg["data"]["analysis_tasks"] = self.extras
        if self.cross is not None:
            cfg.setdefault("trainer", {})["callbacks"] = self.config()["trainer"]["callbacks"]
        units = stream_units(cfg) + [(str(u.get("name") or u.get("task")), u) for u in self.extras]
        return RunStream(self.name, self.args, cfg, self.stages, units)

    def write_config(self, root: Path) -> Path:
        """Write :meth:`config` to ``<prefix folder>.yaml`` beside the folder (atomically) and return it."""
        path = self.folder(root).parent / f"{self.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.config(), sort_keys=False))
        return path


@dataclass
class RunStream:
    """What the sharing plan needs of one run: its config, stages, tasks (with their rows' definitions)."""

    name: str
    args: list[str]
    cfg: dict[str, Any]
    stages: list[dict[str, Any]]
    units: list[tuple[str, dict[str, Any]]]  # (task name, its row definition) in stream order

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.units]

    def steps(self) -> list[int]:
        return [int(s["steps"]) for s in self.stages]

    def analysed(self) -> list[str] | None:
        """Tasks the circuit callback analyses at some step (None: ``seen``, only those trained so far)."""
        cb = _callback_args(self.cfg)
        if cb is None:
            return []
        chosen = cb.get("tasks", "seen")
        if chosen == "seen":
            return None
        return self.names if chosen == "all" else [str(t) for t in chosen]

    def cross(self) -> set[str]:
        """The tasks of the callback's cross-task faithfulness (as the callback chooses them)."""
        cb = _callback_args(self.cfg)
        if cb is None:
            return set()
        return cross_set(cb.get("cross_task"), self.names)


@dataclass
class Sharing:
    """The prefixes a sweep trains once, and the prefix each run continues from (None: from scratch)."""

    prefixes: list[Prefix]  # parents before children
    start: dict[str, Prefix | None]
    stage_counts: dict[str, int]  # each run's number of stages

    def stage_trainings(self) -> tuple[int, int, int]:
        """(stage trainings with sharing, of which in shared prefixes, stage trainings without sharing)."""
        shared = sum(p.depth - (p.parent.depth if p.parent else 0) for p in self.prefixes)
        own = sum(n - (self.start[r].depth if self.start.get(r) else 0) for r, n in self.stage_counts.items())
        return shared + own, shared, sum(self.stage_counts.values())


# ---- the plan -------------------------------------------------------------------------------------------
def plan_sharing(fit_config: Path, runs: Sequence[Any], extra: Sequence[str], share: bool = True) -> Sharing:
    """Which prefixes the runs share (see the module docstring); ``share=False``: none."""
    streams = [run_stream(fit_config, r, extra) for r in runs]
    counts = {s.name: len(s.stages) for s in streams}
    if not share:
        return Sharing([], {s.name: None for s in streams}, counts)
    eligible = [
        s for s in streams if len(s.stages) > 1 and all(st.get("steps") is not None for st in s.stages)
    ]
    members: dict[str, list[RunStream]] = {}
    for s in eligible:
        for k in range(1, len(s.stages)):
            members.setdefault(prefix_key(s, k), []).append(s)
    shared: dict[str, Prefix] = {}
    for key, group in members.items():
        if len(group) < 2:
            continue
        prefix = _make_prefix(key, group)
        if prefix is not None:
            shared[key] = prefix
    start: dict[str, Prefix | None] = {s.name: None for s in streams}
    for s in eligible:
        chain = [shared[k] for j in range(1, len(s.stages)) if (k := prefix_key(s, j)) in shared]
        for parent, child in zip(chain, chain[1:], strict=False):
            child.parent = parent
        start[s.name] = chain[-1] if chain else None
    ordered = sorted(shared.values(), key=lambda p: (p.depth, p.name))
    return Sharing(ordered, start, counts)


def run_stream(fit_config: Path, run: Any, extra: Sequence[str]) -> RunStream:
    """A run's config (as ``circuitft fit`` reads it), stages and tasks."""
    args = [*run.args, *extra]
    cfg = run_config(fit_config, args)
    stages = config_stages(cfg)
    return RunStream(run.name, args, cfg, stages, stream_units(cfg))


def stream_units(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every task of a config's stream with what defines its rows (a mixed stage's components take unset
    fields from the stage); the seed resolved as the data module does: ``data.seed`` plus the position."""
    seed = int((cfg.get("data") or {}).get("seed") or 0)
    out = []
    for stage in config_stages(cfg):
        base = {k: stage[k] for k in TASK_FIELDS if k in stage}
        parts = stage.get("mix") or [None]
        for part in parts:
            unit = (
                dict(base)
                if part is None
                else {**base, **({"task": part} if isinstance(part, str) else part)}
            )
            unit = {k: unit[k] for k in TASK_FIELDS if k in unit}
            unit.setdefault("params", {})
            unit.setdefault("n_train", 1000)
            unit.setdefault("n_val", 200)
            if unit.get("n_test") is None:
                unit["n_test"] = unit["n_val"]
            if unit.get("seed") is None:
                unit["seed"] = seed + len(out)
            name = str(unit.get("name") or unit.get("task"))
            out.append((name, unit))
    return out


def prefix_key(stream: RunStream, k: int) -> str:
    """What runs sharing the first ``k`` stages agree on: the config with only those stages."""
    cfg = json.loads(json.dumps(stream.cfg, default=str))
    cfg.setdefault("data", {})["tasks"] = stream.stages[:k]
    cfg["data"].pop("analysis_tasks", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def cross_set(option: Any, names: Sequence[str]) -> set[str]:
    """The callback's cross-task tasks for ``cross_task`` = ``option`` on a stream of ``names``."""
    if isinstance(option, list):
        return {str(t) for t in option}
    if option is None:
        lo, hi = CROSS_TASK_AUTO
        return set(names) if lo <= len(names) <= hi else set()
    return set(names) if option else set()


def _make_prefix(key: str, group: list[RunStream]) -> Prefix | None:
    """The prefix of ``group`` (runs agreeing on ``key``), or None when their not-yet-trained tasks that the
    prefix would analyse disagree (same name, other rows)."""
    first = group[0]
    k = len(json.loads(key)["data"]["tasks"])
    n_trained = sum(len(st.get("mix") or [None]) for st in first.stages[:k])
    trained = set(first.names[:n_trained])
    extras: dict[str, dict[str, Any]] = {}
    cross: set[str] = set()
    for s in group:
        analysed = s.analysed()
        wanted = set() if analysed is None else {n for n in analysed if n not in trained}
        for name, unit in s.units:
            if name in wanted:
                if name in extras and extras[name] != unit:
                    return None
                extras[name] = unit
        cross |= s.cross() & (trained | wanted)
    callback = _callback_args(first.cfg)
    auto = cross_set(callback.get("cross_task"), [*trained, *extras]) if callback is not None else set()
    override = None if auto >= cross else sorted(cross)
    stages = first.stages[:k]
    label = "__".join("+".join(stage_tasks(st)) for st in stages)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Prefix(
        name=f"{label}-{digest}",
        key=key,
        stages=stages,
        end=sum(int(st["steps"]) for st in stages),
        runs=[s.name for s in group],
        args=list(first.args),
        extras=[{**extras[n]} for n in sorted(extras)],
        cross=override,
        callbacks=(first.cfg.get("trainer") or {}).get("callbacks"),
    )


def _is_circuit_callback(cb: Any) -> bool:
    return isinstance(cb, dict) and str(cb.get("class_path", "")).rsplit(".", 1)[-1] == CALLBACK


def _callback_args(cfg: dict[str, Any]) -> dict[str, Any] | None:
    for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
        if _is_circuit_callback(cb):
            return dict(cb.get("init_args") or {})
    return None


# ---- starting a run from a prefix ----------------------------------------------------------------------
def fork(
    prefix: Prefix, prefix_root: Path, stream: RunStream, run_root: Path, circuits: str = "circuits"
) -> None:
    """Start the run of ``stream`` in ``run_root`` from the end of ``prefix`` (trained in ``prefix_root``).

    Writes, in this order: the ownership marker; the circuit records (and graph files) of the steps up to the
    prefix's end, for the tasks the run analyses, cross-task numbers kept for the run's tasks; the forgetting
    curve's records; every checkpoint of the prefix rewritten for the run's stream, the one at the prefix's
    end last as ``last.ckpt``, with the prefix's TensorBoard scalars of the run's tasks. Raises
    :class:`PrefixIncomplete` (before writing anything) when the prefix has no checkpoint at its end. A kill at
    any point leaves a run without ``last.ckpt`` (forked again) or a
    complete one (resumed)."""
    src, dst = RunFolder(prefix_root, circuits), RunFolder(run_root, circuits)
    # last.ckpt from the prefix's own last.ckpt of that step: it knows itself as the last checkpoint, as an
    # uninterrupted run's does (a step checkpoint does not, and Lightning would then write last-v1.ckpt)
    last = next(
        (
            p
            for p in sorted(src.checkpoints.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
            if _step_of(p) == prefix.end
        ),
        None,
    )
    if last is None:  # stopped before its end (trainer.max_steps, a time limit): nothing to start from
        raise PrefixIncomplete(f"prefix {prefix.name} has no checkpoint at its last step {prefix.end}")
    mark(dst.root, "run")
    analysed = stream.analysed()
    keep = set(stream.names) if analysed is None else set(analysed)
    cross = stream.cross()
    records = []
    for rec in src.record_log().read():
        if rec["step"] > prefix.end or rec["task"] not in keep:
            continue
        rec = dict(rec)
        mine = rec["task"] in cross
        rec["cross_task_faithfulness"] = {
            t: v
            for t, v in (rec.get("cross_task_faithfulness") or {}).items()
            if mine and t in cross and t in keep
        }
        if rec.get("graph_path") and not rec.get("error"):
            _copy_graphs(src.circuits, dst.circuits, str(rec["graph_path"]).split("/")[0], rec["task"])
        records.append(rec)
    dst.record_log().write(records)
    accuracy = [r for r in src.accuracy_log().read() if r["step"] <= prefix.end and r["task"] in stream.names]
    if accuracy:
        dst.accuracy_log().write(accuracy)
    for step in src.checkpoint_steps():
        path = src.step_checkpoint(step)
        if step <= prefix.end and path is not None:
            atomic_write_bytes(
                dst.checkpoints / path.name,
                rewrite_checkpoint(path, src.checkpoints, dst.checkpoints, stream),
            )
    copy_scalars(src.root, dst.root, prefix.end, set(stream.names), _all_names(prefix) - set(stream.names))
    data = rewrite_checkpoint(last, src.checkpoints, dst.checkpoints, stream, last_name=last.name)
    atomic_write_bytes(dst.checkpoints / "last.ckpt", data)


PREFIX_EVENTS = (
    ".prefix"  # suffix of the TensorBoard file a run gets from its prefix (its own time is not in it)
)


def copy_scalars(src: Path, dst: Path, end: int, keep: set[str], drop: set[str]) -> None:
    """The prefix's TensorBoard scalars up to ``end`` as one event file of the run (validation curves, the
    circuit numbers...), without the tags of tasks the run does not have (``drop``)."""
    scalars = []
    for path in sorted(src.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception:  # noqa: BLE001 - an unreadable event file: its scalars are not copied
            continue
        for tag in acc.Tags().get("scalars", []):
            if drop & set(re.split(r"/|~|_on_", tag)):
                continue
            scalars += [(tag, e) for e in acc.Scalars(tag) if e.step <= end]
    if not scalars:
        return
    writer = SummaryWriter(str(dst), filename_suffix=PREFIX_EVENTS)
    for tag, event in sorted(scalars, key=lambda te: (te[1].wall_time, te[0])):
        writer.add_scalar(tag, event.value, event.step, walltime=event.wall_time)
    writer.close()


def _all_names(prefix: Prefix) -> set[str]:
    return {n for n, _ in prefix.as_stream().units}


def _step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True).get("global_step", -1))


def rewrite_checkpoint(
    path: Path, old_dir: Path, new_dir: Path, stream: RunStream, last_name: str | None = None
) -> bytes:
    """A prefix checkpoint as the run's own: the stream's stages and steps in the data module's state, and the
    checkpoint callbacks' paths in the run's checkpoint folder (``last_name``: the prefix's name of its last
    checkpoint, which becomes ``last.ckpt``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get(STREAM_STATE)
    if isinstance(state, dict):
        state["tasks"] = ["+".join(stage_tasks(s)) for s in stream.stages]
        state["task_steps"] = stream.steps()
    old, new = str(old_dir), str(new_dir)
    callbacks = {k: _repath(v, old, new) for k, v in (ckpt.get("callbacks") or {}).items()}
    if last_name is not None:
        callbacks = {k: _repath(v, f"{new}/{last_name}", f"{new}/last.ckpt") for k, v in callbacks.items()}
    ckpt["callbacks"] = callbacks
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def _repath(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {_repath(k, old, new): _repath(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_repath(v, old, new) for v in value)
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _copy_graphs(src: Path, dst: Path, step_dir: str, task: str) -> None:
    """Copy every file of ``task`` in a step folder (the graph, and its JSON copy where there is one)."""
    for path in (src / step_dir).glob(f"{task}.*"):
        atomic_write_bytes(dst / step_dir / path.name, path.read_bytes())
