"""A sweep file read into runs: one ``circuitft fit`` per run, each in its own run folder.

A sweep is a fit config (``fit_config``), a root folder, extra fit arguments common to every run (``args``),
permutation runs (one per ordered tuple of distinct tasks, named ``A__B``) and explicit runs (a name and fit
arguments). :func:`sweep_runs` turns parsed sweep options into the runs with one-line errors on bad input.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitft.errors import ConfigError
from circuitft.names import check_name

MAX_RUNS = 10_000  # runs one sweep may hold (--max_runs raises it)


def sweep_file(args: Any) -> Path | None:
    """The sweep file of parsed options (the last ``--config``), or None."""
    configs = getattr(args, "config", None) or []
    return Path(str(configs[-1])) if configs else None


@dataclass
class Run:
    """One fit of a sweep: its folder name and the fit arguments after the base config."""

    name: str
    args: list[str]


@dataclass
class Permutations:
    """One run per ordered tuple of distinct tasks, named ``A__B``.

    Args:
        tasks: the tasks to permute (none: no permutation runs)
        length: tasks per run (the length of each tuple)
        stage: TaskConfig fields of every stage, e.g. {steps: 270, n_train: 3600, n_val: 400}
        task_fields: TaskConfig fields of one task's stages over ``stage``, e.g. {Sub: {n_val: 45, n_test: 41}}
        positions: TaskConfig fields by position in the tuple over those, e.g. [{steps: 240}, {steps: 40}]
            (A's stage, B's stage)
    """

    tasks: list[str] = field(default_factory=list)
    length: int = 2
    stage: dict[str, Any] = field(default_factory=dict)
    task_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: list[dict[str, Any]] = field(default_factory=list)


def sweep_runs(args: Any) -> tuple[Path, Path, list[Run]]:
    """(fit config path, root folder, runs) of parsed sweep options; one-line ConfigError on bad input."""
    file = sweep_file(args)
    where = f"sweep file {file}" if file is not None else "sweep"
    if args.fit_config is None:
        raise ConfigError(f"{where}: missing fit_config (the fit config every run starts from)")
    fit_config = Path(args.fit_config.absolute).resolve()
    if args.root_dir is not None:
        root = Path(args.root_dir)
    elif file is not None:
        root = Path("runs") / file.stem
    else:
        raise ConfigError("give --root_dir (the folder of the run folders) or a sweep file with --config")
    common = [str(a) for a in args.args]
    runs: list[Run] = []
    perm = args.permutations
    if not hasattr(perm, "tasks"):
        raise ConfigError(f"{where}: permutations must be a mapping of tasks, length and stage, got {perm!r}")
    if perm.tasks:
        tasks, length = list(perm.tasks), int(perm.length)
        if length < 1:
            raise ConfigError(f"{where}: permutations.length must be positive, got {length}")
        if len(tasks) < length:
            raise ConfigError(f"{where}: permutations need at least {length} tasks")
        check_run_count(math.perm(len(tasks), length), len(tasks), length, len(args.runs), args, where)
        for j, t in enumerate(tasks):
            check_name(t, f"{where}: permutations.tasks[{j}]")
        unknown = sorted(set(perm.task_fields) - set(tasks))
        if unknown:
            raise ConfigError(
                f"{where}: permutations.task_fields names tasks not in permutations.tasks: {unknown}"
            )
        if len(perm.positions) > length:
            raise ConfigError(
                f"{where}: permutations.positions has {len(perm.positions)} entries for {length} positions"
            )
        positions = list(perm.positions) + [{}] * (length - len(perm.positions))
        for combo in itertools.permutations(tasks, length):
            stream = [
                {"task": t, **dict(perm.stage), **dict(perm.task_fields.get(t) or {}), **dict(positions[i])}
                for i, t in enumerate(combo)
            ]
            runs.append(Run("__".join(combo), ["--data.tasks", json.dumps(stream)]))
    for i, r in enumerate(args.runs):
        if "name" not in r:
            raise ConfigError(f"{where}: runs[{i}] needs a 'name'")
        unknown = sorted(set(r) - {"name", "args"})
        if unknown:
            raise ConfigError(f"{where}: runs[{i}]: unknown keys {unknown}; valid: ['args', 'name']")
        check_name(r["name"], f"{where}: runs[{i}].name")
        runs.append(Run(str(r["name"]), [str(a) for a in r.get("args") or []]))
    if not runs:
        raise ConfigError(f"{where}: no runs (give 'permutations' or 'runs')")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"{where}: duplicate run names {dupes}")
    for r in runs:
        r.args = common + r.args
    return fit_config, root, runs


def check_run_count(n_perm: int, n_tasks: int, length: int, n_listed: int, args: Any, where: str) -> None:
    """ConfigError when the sweep has more runs than ``--max_runs`` (counted, before any run is built)."""
    limit = getattr(args, "max_runs", None) or MAX_RUNS
    total = n_perm + n_listed
    if total > limit:
        raise ConfigError(
            f"{where}: {total:,} runs ({n_perm:,} permutations of {n_tasks} tasks taken {length} at a time"
            f"{f' and {n_listed} listed runs' if n_listed else ''}), more than --max_runs {limit:,}; "
            "shorten the permutations or raise --max_runs"
        )


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n <= 0 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < N")
    return i, n


def fit_command(fit_config: Path, folder: Path, run: Run, extra: Sequence[str], resume: bool) -> list[str]:
    """The ``python -m circuitft fit`` command line of one run."""
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(fit_config), *run.args, *extra]
    cmd += ["--trainer.default_root_dir", str(folder)]
    if resume:
        cmd += ["--ckpt_path", "last"]
    return cmd
