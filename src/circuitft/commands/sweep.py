"""``circuitft sweep --config SWEEP.yaml [--shard i/N] [--dry_run]``: many fits, one run folder each.

A sweep file names a normal fit config and the runs to make from it::

    fit_config: pair_base.yaml          # relative to the sweep file
    root_dir: runs/pairs                # run folders: <root_dir>/<run name>
    args: [--model.later_tasks_lr_scale, "1.0"]   # extra fit arguments for every run (optional)
    permutations:                       # one run per ordered tuple of distinct tasks (optional)
      tasks: [Abs, Add, Sub]
      length: 2
      stage: {steps: 270, n_train: 3600, n_val: 400}   # TaskConfig fields of every stage
    runs:                               # explicit runs (optional): a name and extra fit arguments
      - {name: add_only, args: [--data.tasks, '[{"task": "Add", "steps": 270}]']}

Runs go in sequence, each ``circuitft fit`` in its own subprocess (so DDP works inside a run). A run whose
folder holds ``DONE`` is skipped; one with ``checkpoints/last*.ckpt`` but no ``DONE`` resumes with
``--ckpt_path last``. ``--shard i/N`` runs every N-th run starting at i (0-based).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from circuitft.commands.args import OneLineParser, parse
from circuitft.errors import ConfigError
from circuitft.names import check_name, inside
from circuitft.runlock import OWNER_ENV, RunLock, RunLocked

SWEEP_KEYS = {"fit_config", "root_dir", "args", "permutations", "runs"}
DONE = "DONE"


@dataclass
class Run:
    """One fit of a sweep: its folder name and the fit arguments after the base config."""

    name: str
    args: list[str]


def load_sweep(path: str | Path) -> tuple[Path, Path, list[Run]]:
    """Parse a sweep file into (fit config path, root folder, runs); one-line ConfigError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"sweep file {path}: malformed YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep file {path}: expected a mapping")
    unknown = sorted(set(spec) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown keys {unknown}; valid: {sorted(SWEEP_KEYS)}")
    if "fit_config" not in spec:
        raise ConfigError(f"sweep file {path}: missing key 'fit_config'")
    fit_config = (path.parent / spec["fit_config"]).resolve()
    if not fit_config.is_file():
        raise ConfigError(f"sweep file {path}: fit_config {fit_config} does not exist")
    root = Path(spec.get("root_dir") or f"runs/{path.stem}")
    common = [str(a) for a in spec.get("args") or []]
    runs: list[Run] = []
    perm = spec.get("permutations")
    if perm:
        tasks, length = list(perm.get("tasks") or []), int(perm.get("length", 2))
        if len(tasks) < length:
            raise ConfigError(f"sweep file {path}: permutations need at least {length} tasks")
        stage = dict(perm.get("stage") or {})
        for j, t in enumerate(tasks):
            check_name(t, f"sweep file {path}: permutations.tasks[{j}]")
        for combo in itertools.permutations(tasks, length):
            stream = [{"task": t, **stage} for t in combo]
            runs.append(Run("__".join(combo), ["--data.tasks", json.dumps(stream)]))
    for i, r in enumerate(spec.get("runs") or []):
        if not isinstance(r, dict) or "name" not in r:
            raise ConfigError(f"sweep file {path}: runs[{i}] needs a 'name'")
        check_name(r["name"], f"sweep file {path}: runs[{i}].name")
        runs.append(Run(str(r["name"]), [str(a) for a in r.get("args") or []]))
    if not runs:
        raise ConfigError(f"sweep file {path}: no runs (give 'permutations' or 'runs')")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep file {path}: duplicate run names")
    for r in runs:
        r.args = common + r.args
    return fit_config, root, runs


def check_runs(fit_config: Path, runs: Sequence[Run], extra: Sequence[str]) -> None:
    """Fail fast, before any run starts: every run's task stream names known tasks with positive lengths,
    its model is available (hub models: in the local cache) and its data files can be read, and the
    arguments of the first run (common ``args`` and ``extra`` included) parse as a fit config. Every
    problem found is listed (one line each) before the error."""
    import contextlib
    import io

    from circuitft.commands.train import main as fit_main
    from circuitft.data.tasks import task_names
    from circuitft.preflight import data_problem, model_problem

    known = set(task_names())
    base = yaml.safe_load(fit_config.read_text()) or {}
    problems: list[str] = []
    checked: dict[str, str | None] = {}  # model specs and data sources are checked once each
    for run in runs:
        args = [*run.args, *extra]
        tasks = (base.get("data") or {}).get("tasks") or []
        model = str((base.get("model") or {}).get("model") or "")
        for i, arg in enumerate(args[:-1]):
            if arg == "--data.tasks":
                tasks = yaml.safe_load(args[i + 1]) or []
            elif arg == "--model.model":
                model = args[i + 1]
        for arg in args:
            if arg.startswith("--model.model="):
                model = arg.split("=", 1)[1]
        if model:
            if model not in checked:
                checked[model] = model_problem(model, full=True)
            if checked[model]:
                problems.append(f"run {run.name}: model.model {model}: {checked[model]}")
        for j, t in enumerate(tasks):
            where = f"run {run.name}: data.tasks[{j}]"
            if not isinstance(t, dict):
                problems.append(f"{where}: expected a mapping, got {t!r}")
                continue
            mixed = [m.get("task") if isinstance(m, dict) else m for m in t.get("mix") or []]
            for name in mixed or ([t.get("task")] if t.get("source") is None else []):
                if name not in known:
                    problems.append(f"{where}: unknown task {name!r}; see `circuitft tasks list`")
            for key in ("steps", "epochs"):
                if t.get(key) is not None and not t[key] > 0:
                    problems.append(f"{where}: {key} must be positive, got {t[key]}")
            source = t.get("source")
            if source is not None:
                if str(source) not in checked:
                    checked[str(source)] = data_problem(str(source))
                if checked[str(source)]:
                    problems.append(f"{where}: source {checked[str(source)]}")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        raise ConfigError(f"{len(problems)} problems in the sweep's runs (listed above); nothing was run")
    if runs:
        with contextlib.redirect_stdout(io.StringIO()):
            fit_main("fit", ["--config", str(fit_config), *runs[0].args, *extra, "--print_config"])


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n <= 0 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < N")
    return i, n


def run_state(folder: Path) -> str:
    """``done``, ``resume`` (checkpoints but no DONE marker) or ``new``."""
    if (folder / DONE).exists():
        return "done"
    if any((folder / "checkpoints").glob("last*.ckpt")):
        return "resume"
    return "new"


def fit_command(fit_config: Path, folder: Path, run: Run, extra: Sequence[str], resume: bool) -> list[str]:
    """The ``python -m circuitft fit`` command line of one run."""
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(fit_config), *run.args, *extra]
    cmd += ["--trainer.default_root_dir", str(folder)]
    if resume:
        cmd += ["--ckpt_path", "last"]
    return cmd


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft sweep``."""
    p = OneLineParser(prog="circuitft sweep", description="Run a sweep of fits (see docs).")
    p.add_argument("--config", required=True, help="sweep YAML file")
    p.add_argument("--shard", default="0/1", help="run every N-th run starting at i: i/N (0-based)")
    p.add_argument("--dry_run", action="store_true", help="list the runs and their state, run nothing")
    p.add_argument("extra", nargs="*", help="extra fit arguments for every run (after --)")
    args = parse(p, argv)
    if isinstance(args, int):  # --help
        return args
    fit_config, root, runs = load_sweep(args.config)
    i, n = parse_shard(args.shard)
    mine = runs[i::n]
    check_runs(fit_config, mine, args.extra)
    failed, busy = [], []
    for k, run in enumerate(mine, 1):
        folder = inside(root, run.name, key=f"run {run.name}")
        state = run_state(folder)
        print(f"[{k}/{len(mine)}] {run.name}: {state}", flush=True)
        if args.dry_run or state == "done":
            continue
        try:
            lock = RunLock(folder, "sweep", key="shard (another worker runs it)").acquire()
        except RunLocked as err:  # another worker (an overlapping --shard) trains it: skip it
            print(f"error: run {run.name}: {err}", file=sys.stderr)
            busy.append(run.name)
            continue
        try:
            state = run_state(folder)  # again, under the lock: another worker may have finished it
            if state == "done":
                continue
            cmd = fit_command(fit_config, folder, run, args.extra, resume=state == "resume")
            rc = subprocess.call(cmd, env={**os.environ, OWNER_ENV: str(os.getpid())})
            if rc != 0:
                print(f"error: run {run.name} failed with exit status {rc}", file=sys.stderr)
                failed.append(run.name)
                continue
            tmp = folder / f".{DONE}.tmp"
            tmp.write_text("finished\n")
            os.replace(tmp, folder / DONE)
        finally:
            lock.release()
    if failed:
        print(f"error: {len(failed)} of {len(mine)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if busy:
        print(f"error: {len(busy)} runs skipped, held by another worker: {', '.join(busy)}", file=sys.stderr)
        return 2
    return 0
