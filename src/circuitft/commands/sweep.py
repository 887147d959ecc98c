"""``circuitft sweep --config SWEEP.yaml [--shard i/N] [--only NAME ...] [--dry_run]``: many fits, one run folder each.

A sweep file is this command's ``--config``: a YAML file of its options, which name a normal fit config and
the runs to make from it::

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
``--ckpt_path last``. ``--shard i/N`` runs every N-th run starting at i (0-based); ``--only`` picks runs by
name (before the shard's share is taken). Runs whose streams start with the same stages train that prefix
once (``--share_prefix``, on by default; :mod:`circuitft.sweeps.prefix`). ``--dry_run`` runs nothing: it
checks every run and prints each run's tasks, steps, circuit analyses and state, the stage trainings, the
totals and an estimate of the time (:mod:`circuitft.sweeps.plan`). The logic lives in :mod:`circuitft.sweeps`;
this module parses and prints.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse.typing import Path_fr

from circuitft.commands.args import flag, make_parser, parse
from circuitft.commands.train import main as fit_main
from circuitft.data.tasks import task_names
from circuitft.errors import ConfigError
from circuitft.names import inside
from circuitft.owned import check_owned
from circuitft.preflight import data_problem, model_problem
from circuitft.safeyaml import load_yaml, read_yaml_file
from circuitft.sweeps.execute import SweepRunner
from circuitft.sweeps.plan import plan_table
from circuitft.sweeps.prefix import plan_sharing
from circuitft.sweeps.spec import MAX_RUNS, Permutations, Run, parse_shard, sweep_file, sweep_runs


def build_parser(prog: str = "circuitft sweep") -> Any:
    """The command's argument parser; a sweep file is its ``--config``."""
    p = make_parser(
        prog,
        "Run many fits from one sweep file, each `circuitft fit` in its own run folder <root_dir>/<run name>. "
        "The sweep file is this command's --config: a YAML mapping of the options below, e.g. "
        "{fit_config: pair_base.yaml, root_dir: runs/pairs, permutations: {tasks: [Abs, Add, Sub], length: 2, "
        "stage: {steps: 270}}}. Finished runs (DONE in their folder) are skipped, interrupted ones resume "
        "from their last checkpoint.",
        before_dump=_fill_root_dir,
    )
    p.add_argument(
        "--fit_config",
        type=Path_fr | None,
        default=None,
        help="the fit config every run starts from (required; in a sweep file: relative to that file)",
    )
    p.add_argument(
        "--root_dir",
        type=str | None,
        default=None,
        help="folder of the run folders (null: runs/<name of the sweep file>)",
    )
    p.add_argument(
        "--args",
        type=list[str | int | float | bool],
        default=[],
        help="extra fit arguments for every run, e.g. [--model.lr, '0.1']",
    )
    p.add_argument("--permutations", type=Permutations, default=Permutations(), help="permutation runs")
    p.add_argument(
        "--runs",
        type=list[dict[str, Any]],
        default=[],
        help="explicit runs: a list of {name: NAME, args: [fit arguments]}",
    )
    p.add_argument(
        "--max_runs",
        type=int,
        default=MAX_RUNS,
        help=f"refuse a sweep of more runs than this (counted before any is built; default {MAX_RUNS:,})",
    )
    p.add_argument("--shard", type=str, default="0/1", help="run every N-th run starting at i: i/N (0-based)")
    p.add_argument(
        "--only",
        type=str,
        nargs="+",
        default=[],
        metavar="NAME",
        help="run only these runs (names as --dry_run lists them; --shard splits them; none: every run)",
    )
    p.add_argument(
        "--share_prefix",
        type=bool,
        default=True,
        help="runs whose task streams start with the same stages (same tasks, steps, data, seed, model and "
        "options) train that prefix once, in <root_dir>/.prefixes/, and continue from its end; the result is "
        "that of an uninterrupted run (false: every run trains from scratch)",
    )
    p.add_argument(
        "--dry_run",
        **flag(
            "check every run, print each one's tasks, steps, analyses and state, the totals "
            "and a time estimate; run nothing"
        ),
    )
    p.add_argument(
        "--extra",
        type=list[str],
        default=[],
        help="extra fit arguments for every run, after the run's own; everything after `--` is added here "
        "(e.g. -- --trainer.precision bf16-mixed)",
    )
    return p


def after_dashes(argv: Sequence[str]) -> list[str]:
    """``argv`` with the fit arguments after ``--`` turned into ``--extra+=ARG`` (added to ``extra``)."""
    argv = list(argv)
    if "--" not in argv:
        return argv
    i = argv.index("--")
    return [*argv[:i], *(f"--extra+={a}" for a in argv[i + 1 :])]


def _fill_root_dir(args: Any) -> None:
    """``--print_config`` writes the root folder the runs would use (not null), so the file it writes
    names the same folders under any file name."""
    if args.get("root_dir") is None and sweep_file(args) is not None:
        args["root_dir"] = str(Path("runs") / sweep_file(args).stem)


def load_sweep(path: str | Path) -> tuple[Path, Path, list[Run]]:
    """Parse a sweep file into (fit config path, root folder, runs); one-line ConfigError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    args = parse(build_parser(), ["--config", str(path)])
    if isinstance(args, int):  # pragma: no cover - only --help or --print_config exit
        raise ConfigError(f"sweep file {path}: could not be read")
    return sweep_runs(args)


def check_runs(fit_config: Path, runs: Sequence[Run], extra: Sequence[str]) -> None:
    """Fail fast, before any run starts: every run's task stream names known tasks with positive lengths,
    its model is available (hub models: in the local cache) and its data files can be read, and the
    arguments of the first run (common ``args`` and ``extra`` included) parse as a fit config. Every
    problem found is listed (one line each) before the error."""
    known = set(task_names())
    base = read_yaml_file(fit_config, f"fit config {fit_config}") or {}
    problems: list[str] = []
    checked: dict[str, str | None] = {}  # model specs and data sources are checked once each
    for run in runs:
        args = [*run.args, *extra]
        tasks = (base.get("data") or {}).get("tasks") or []
        model = str((base.get("model") or {}).get("model") or "")
        for i, arg in enumerate(args[:-1]):
            if arg == "--data.tasks":
                tasks = load_yaml(args[i + 1], f"run {run.name}: --data.tasks") or []
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


def one_run_command(argv: Sequence[str], name: str) -> str:
    """``circuitft sweep ARGS --only NAME``: the user's arguments (config, root folder, fit arguments after
    ``--``, ...) without ``--dry_run``, ``--only`` and ``--shard`` (``--only`` names the one run, and a shard
    would take its share of that one run)."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:cut], argv[cut:]
    kept: list[str] = []
    i = 0
    while i < len(head):
        arg = head[i]
        i += 1
        if arg == "--only":  # and every name after it
            while i < len(head) and not head[i].startswith("-"):
                i += 1
        elif arg == "--shard":
            i += 1
        elif arg == "--dry_run":  # and its optional true/false
            i += int(i < len(head) and head[i].lower() in ("true", "false", "yes", "no"))
        elif not arg.startswith(("--dry_run=", "--shard=", "--only=")):
            kept.append(arg)
    return shlex.join(["circuitft", "sweep", *kept, "--only", name, *tail])


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft sweep``."""
    args = parse(build_parser(f"circuitft {name}"), after_dashes(argv))
    if isinstance(args, int):  # --help, --print_config
        return args
    fit_config, root, runs = sweep_runs(args)
    i, n = parse_shard(args.shard)
    if args.only:
        names = {r.name for r in runs}
        unknown = [x for x in args.only if x not in names]
        if unknown:
            raise ConfigError(f"--only {unknown[0]}: no run of that name in the sweep (--dry_run lists them)")
    # prefixes are planned over every run, so that the shards agree on them
    sharing = plan_sharing(fit_config, runs, args.extra, share=args.share_prefix)
    if args.only:
        runs = [r for r in runs if r.name in args.only]
    mine = runs[i::n]
    check_runs(fit_config, mine, args.extra)
    for run in mine:  # a run folder holding the user's own files is refused before any run starts
        check_owned(inside(root, run.name, key=f"run {run.name}"), "run", f"run {run.name}:", what="train in")
    if args.dry_run:
        rerun = lambda name: one_run_command(argv, name)  # noqa: E731
        print(
            plan_table(
                fit_config, root, mine, args.extra, sweep_file=sweep_file(args), rerun=rerun, sharing=sharing
            )
        )
        return 0
    return SweepRunner(fit_config, root, args.extra, sharing).run_all(mine)
