"""``circuitft sweep --dry_run``: each run's tasks, steps, circuit analyses and state, the totals, a time estimate.

Counts come from each run's fit config (the sweep's ``fit_config`` with the run's arguments applied, as
``circuitft fit`` would read them): steps per stage (``steps``, or ``epochs`` times the training rows over
the batch size), and the circuit analyses the :class:`~circuitft.callbacks.CircuitCallback` makes, one per
(analysis step, task): step 0 when ``at_start``, every ``every_n_steps`` (by default the checkpoint
interval) and every task end, on the tasks seen so far (``tasks: seen``), all of them or a list.

The state of a run comes from its folder: ``done`` (``DONE``), ``locked`` (a live process holds the run's
lock: another worker trains it), ``partial (at step N)`` (checkpoints, the last at step N; it resumes from
there) or ``new``. The time estimate comes from the sweep's finished runs only, from what their folders
recorded: the span of their TensorBoard events (training, validation, checkpoints and analyses) and the
``circuit/seconds`` of each analysis, giving seconds per training step and per analysis, and the wall time
the sweep recorded in each ``DONE`` (the start-up outside the events: loading the model); with no finished
run there is no estimate (the table says so, and the command that runs one, with every option given).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitft.data.schedule import config_stages, config_steps, from_config, stage_tasks
from circuitft.runfolder import CIRCUITS, RECORDS, RecordLog, RunFolder
from circuitft.runlock import holder, is_stale
from circuitft.safeyaml import load_yaml, read_yaml_file
from circuitft.sweeps.estimate import Rates, duration, measured_rates

CALLBACK = "CircuitCallback"
PREFIXES_DIR = ".prefixes"  # shared prefixes, under the sweep's root folder (circuitft.sweeps.prefix)


@dataclass
class RunPlan:
    """What one run of a sweep does and how far it got."""

    name: str
    stages: list[str]  # stage names (a mixed stage: its tasks joined by +)
    model: str
    steps: int | None  # None: unknown (an epochs stage over a data file)
    analyses: int | None
    state: str  # done, locked, partial, new
    at_step: int | None = None  # partial/locked: step of the last checkpoint
    analyses_done: int = 0
    from_step: int = 0  # the run starts at this step: the end of the shared prefix it continues
    via: str | None = None  # that prefix

    @property
    def steps_left(self) -> int | None:
        if self.state == "done":
            return 0
        if self.steps is None:
            return None
        return max(0, self.steps - max(0, (self.at_step or 0) - self.from_step))

    @property
    def analyses_left(self) -> int | None:
        if self.state == "done":
            return 0
        return None if self.analyses is None else max(0, self.analyses - self.analyses_done)

    def state_text(self) -> str:
        if self.state in ("partial", "locked") and self.at_step is not None:
            return f"{self.state} (at step {self.at_step})"
        if self.state == "new" and self.via:
            return f"new (from step {self.from_step} of {self.via})"
        return self.state


# ---- a run's fit config ------------------------------------------------------------------------------
def run_config(fit_config: Path, args: Sequence[str]) -> dict[str, Any]:
    """The fit config of a run: ``fit_config`` with the ``--key.sub value`` arguments applied (values read
    as YAML, as ``circuitft fit`` reads them); ``--config FILE`` arguments merge that file."""
    cfg = read_yaml_file(fit_config, f"fit config {fit_config}") or {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            i += 1
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"
        i += 1
        if key == "config":
            _merge(cfg, read_yaml_file(value, f"config file {value}") or {})
            continue
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            if isinstance(node.get(part), list) and node[part] and isinstance(node[part][-1], dict):
                node = node[part][-1]  # as jsonargparse: --trainer.callbacks.init_args.X sets the last one's
                continue
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = load_yaml(value, f"--{key}")
    return cfg


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _stages(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return config_stages(cfg)


stage_units = stage_tasks  # the task names of one stage (circuitft.data.schedule)
stage_steps = config_steps  # the optimizer steps of each stage (circuitft.data.schedule)


def _callback(cfg: dict[str, Any]) -> dict[str, Any] | None:
    for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).rsplit(".", 1)[-1] == CALLBACK:
            return dict(cb.get("init_args") or {})
    return None


def count_analyses(cfg: dict[str, Any], steps: list[int | None], after: int = -1) -> int | None:
    """The (step, task) analyses the circuit callback makes in the run at steps past ``after`` (0 without the
    callback)."""
    cb = _callback(cfg)
    if cb is None:
        return 0
    if any(s is None for s in steps):
        return None
    plan = from_config(cfg)
    ends = [int(e) for e in plan.ends if e is not None]
    total = ends[-1] if ends else 0
    interval = cb.get("every_n_steps") or (cfg.get("checkpoint") or {}).get("every_n_train_steps")
    n_tasks = len(plan.names)
    chosen = cb.get("tasks", "seen")
    at = {0} if cb.get("at_start", True) else set()
    at |= {s for s in range(1, total + 1) if (interval and s % int(interval) == 0) or s in ends}
    count = 0
    for step in at:
        if step <= after:
            continue
        if isinstance(chosen, list):
            count += len(chosen)
        elif chosen == "all":
            count += n_tasks
        else:  # the tasks seen so far (step 0: the first task; a task end belongs to its task)
            count += len(plan.seen_at(step))
    return count


def records_dir(cfg: dict[str, Any], folder: Path) -> Path:
    """The circuit callback's folder in a run folder."""
    return RunFolder(folder, str((_callback(cfg) or {}).get("dirname") or CIRCUITS)).circuits


# ---- a run's state ------------------------------------------------------------------------------------
def run_progress(folder: Path) -> tuple[str, int | None]:
    """(state, step of the last checkpoint): ``done``, ``locked``, ``partial`` or ``new``."""
    run = RunFolder(folder)
    if run.is_done():
        return "done", None
    step = run.last_checkpoint_step()
    info = holder(folder) if folder.is_dir() else None
    if info is not None and not is_stale(info):
        return "locked", step
    if run.has_last_checkpoint():
        return "partial", step
    return "new", None


def analyses_before(records: Path, step: int | None, after: int = -1) -> int:
    """Successful analyses recorded before ``step`` (all of them when ``step`` is None) and past ``after``."""
    n = 0
    for _, line in RecordLog(records / RECORDS).lines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(rec, dict)
            and not rec.get("error")
            and (step is None or int(rec.get("step", 0)) < step)
            and int(rec.get("step", 0)) > after
        ):
            n += 1
    return n


def plan_runs(
    fit_config: Path, root: Path, runs: Sequence[Any], extra: Sequence[str], sharing: Any = None
) -> list[RunPlan]:
    """The plan of every run (name, stages, steps, analyses, state), after the shared prefixes they continue
    from (``sharing``): a run's steps and analyses are those it makes itself, past its prefix's end."""
    plans = []
    needed = []
    for run in runs:
        prefix = sharing.start.get(run.name) if sharing is not None else None
        while prefix is not None and prefix not in needed:
            needed.append(prefix)
            prefix = prefix.parent
    for prefix in sorted(needed, key=lambda p: (p.depth, p.name)):
        cfg = prefix.as_stream().cfg
        after = prefix.parent.end if prefix.parent else 0
        plans.append(_plan(f"{PREFIXES_DIR}/{prefix.name}", cfg, prefix.folder(root), after, prefix.parent))
    for run in runs:
        cfg = run_config(fit_config, [*run.args, *extra])
        prefix = sharing.start.get(run.name) if sharing is not None else None
        plans.append(_plan(run.name, cfg, root / run.name, prefix.end if prefix else 0, prefix))
    return plans


def _plan(name: str, cfg: dict[str, Any], folder: Path, after: int, prefix: Any) -> RunPlan:
    steps = stage_steps(cfg)
    state, at_step = run_progress(folder)
    past = after if prefix is not None else -1  # analyses up to a prefix's end are its prefix's
    # a resumed run analyses its checkpoint step again: only analyses before it count as done
    done = analyses_before(records_dir(cfg, folder), None if state == "done" else (at_step or 0), past)
    total = None if any(s is None for s in steps) else sum(steps)  # type: ignore[misc]
    return RunPlan(
        name=name,
        stages=["+".join(stage_units(s)) for s in _stages(cfg)],
        model=str((cfg.get("model") or {}).get("model") or "?"),
        steps=None if total is None else total - after,
        analyses=count_analyses(cfg, steps, after=past),
        state=state,
        at_step=at_step,
        analyses_done=done,
        from_step=after,
        via=f"{PREFIXES_DIR}/{prefix.name}" if prefix is not None else None,
    )


# ---- the table ------------------------------------------------------------------------------------------
def plan_table(
    fit_config: Path,
    root: Path,
    runs: Sequence[Any],
    extra: Sequence[str],
    sweep_file: Path | None = None,
    rerun: Callable[[str], str] | None = None,
    sharing: Any = None,
) -> str:
    """The ``--dry_run`` report: header, one row per run (and shared prefix), the stage trainings, totals and
    the time estimate. ``rerun(name)``: the command that runs one run of the sweep with every option the
    user gave (the estimate suggests it)."""
    plans = plan_runs(fit_config, root, runs, extra, sharing)
    rates = measured_rates(root, plans)
    table = format_table(plans, root, fit_config, rates, sweep_file, rerun)
    if sharing is None:
        return table
    lines = table.split("\n")
    lines.insert(len(lines) - 2, trainings_line(sharing, [r.name for r in runs]))
    return "\n".join(lines)


def trainings_line(sharing: Any, names: Sequence[str]) -> str:
    """``stage trainings: N (M shared)``: the stages the runs ``names`` and their prefixes train."""
    needed, own, alone = [], 0, 0
    for name in names:
        n, prefix = sharing.stage_counts[name], sharing.start.get(name)
        alone += n
        own += n - (prefix.depth if prefix else 0)
        while prefix is not None and prefix not in needed:
            needed.append(prefix)
            prefix = prefix.parent
    shared = sum(p.depth - (p.parent.depth if p.parent else 0) for p in needed)
    if not needed:
        return f"stage trainings: {own} (0 shared)"
    return (
        f"stage trainings: {own + shared} ({shared} shared), {alone} without share_prefix: "
        f"{len(needed)} shared prefixes in .prefixes/"
    )


def format_table(
    plans: Sequence[RunPlan],
    root: Path,
    fit_config: Path,
    rates: Rates | None,
    sweep_file: Path | None,
    rerun: Callable[[str], str] | None = None,
) -> str:
    """The table of :func:`plan_table` from plans and rates."""
    models = sorted({p.model for p in plans})
    source = f"sweep {sweep_file}" if sweep_file else "sweep"
    lines = [
        f"{source}: {_runs(plans)} of {_shown(fit_config)}, model {', '.join(models)}, run folders in {root}/"
    ]
    rows = [("run", "tasks", "steps", "analyses", "state")]
    for p in plans:
        rows.append((p.name, " -> ".join(p.stages), _num(p.steps), _num(p.analyses), p.state_text()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append(
            f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip()
        )
    states = {s: sum(p.state == s for p in plans) for s in ("done", "partial", "locked", "new")}
    steps = _total([p.steps for p in plans])
    steps_left = _total([p.steps_left for p in plans])
    analyses = _total([p.analyses for p in plans])
    analyses_left = _total([p.analyses_left for p in plans])
    lines.append(
        f"total: {_runs(plans)} ({', '.join(f'{n} {s}' for s, n in states.items())}), "
        f"{_num(steps)} steps ({_num(steps_left)} to go), {_num(analyses)} analyses ({_num(analyses_left)} to go)"
    )
    lines.append(estimate_line(plans, root, rates, steps_left, analyses_left, sweep_file, rerun))
    return "\n".join(lines)


def estimate_line(
    plans: Sequence[RunPlan],
    root: Path,
    rates: Rates | None,
    steps_left: int | None,
    analyses_left: int | None,
    sweep_file: Path | None,
    rerun: Callable[[str], str] | None = None,
) -> str:
    """The footer: the estimated time to go and where it comes from, or why there is none."""
    left = [p for p in plans if p.state != "done"]
    if not left:
        return "time: nothing to run (every run is done)"
    done = len(plans) - len(left)
    if rates is None and done:
        return (
            f"time: no estimate: the {_count(done, 'finished run')} in {root}/ recorded no TensorBoard events "
            "with their steps to time"
        )
    if rates is None:
        first = next((p.name for p in left if not p.name.startswith(PREFIXES_DIR)), left[0].name)
        if rerun is not None:
            how = rerun(first)
        else:
            how = f"circuitft sweep --config {sweep_file} --only {first}" if sweep_file else f"--only {first}"
        return (
            f"time: no estimate: no finished run in {root}/ yet; run one with `{how}`, then --dry_run again"
        )
    if steps_left is None or analyses_left is None:
        return "time: no estimate: some runs' steps are unknown (epochs over a data file)"
    seconds = (
        steps_left * rates.step_s + analyses_left * rates.analysis_s + len(left) * (rates.startup_s or 0)
    )
    startup = (
        "each run's start-up, loading the model, not counted"
        if rates.startup_s is None
        else f"{rates.startup_s:.3g} s to start each run, loading the model"
    )
    return (
        f"time: about {duration(seconds)} for the {_count(len(left), 'run')} to go, estimated from "
        f"{_count(rates.n_runs, 'finished run')} in {root}/ ({rates.step_s:.3g} s per training step with its validation and checkpoints, "
        f"{rates.analysis_s:.3g} s per analysis; {startup})"
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _runs(plans: Sequence[RunPlan]) -> str:
    """``12 runs`` or ``12 runs and 4 shared prefixes``."""
    prefixes = sum(p.name.startswith(PREFIXES_DIR) for p in plans)
    runs = _count(len(plans) - prefixes, "run")
    return f"{runs} and {_count(prefixes, 'shared prefix')}" if prefixes else runs


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("x") else f"{n} {noun}s"


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)


def _total(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
