"""Every shell command shown in README.md and docs/*.md is run by a test, so the guide cannot rot.

Commands are the lines of fenced ``bash``/``sh``/``shell`` blocks (``$ `` stripped), and the ``$ `` lines of
``console`` and untagged blocks; a line ending in ``\\`` continues on the next one, ``&&`` splits a line into
commands that are checked one after another, ``# ...`` comments are dropped.

Each command is matched against RULES (first match wins). A rule names a fast check (in ``make test``) and/or a
slow one (``make test-slow``). A command no rule matches fails with its file and line: add a rule.

How each kind of command is checked:

- ``circuitft fit/validate/test ...``: fast: the command with ``--print_config`` parses (config files exist,
  every option is known) and prints the resolved config. Slow: the command runs on tiny GPT-2 for 2 steps
  (a ``--ckpt_path last`` resume first makes the run it resumes).
- ``circuitft sweep ...``: fast: ``--dry_run`` (every run's tasks, config and data checked) with the model
  swapped for tiny GPT-2. Slow: the first run of the sweep (``--shard 0/N``) trains 2 steps on tiny GPT-2.
- Commands that only print (``--print_config``, ``--dry_run``) have no slow check. Nor do the prior
  experiments (``configs/experiments/``: minutes per run even on tiny GPT-2):
  tests/commands/test_experiment_configs.py trains each of them for 2 steps in the slow suite.
- ``circuitft tasks list/show/make``: run as shown (cheap). ``tasks check``, ``circuit``: run with
  ``--model tiny-gpt2`` (``circuit`` is slow; its fast check is its ``--help`` naming every option used).
- ``circuitft report/export/export-graph/bench/circuitlora``: fast: ``--help`` printed and naming every option the
  command uses. Slow: run on a tiny run folder made from configs/quick.yaml.
- ``circuitft CMD ... --print_config > FILE``: the YAML is written to FILE in the scratch folder and reads back
  through ``--config FILE`` (a later command's ``--config FILE`` uses it; the slow run makes it first).
- ``circuitft --help``, ``circuitft CMD --help``: the help text is printed, exit 0.
- ``python demo/walkthrough.py``: fast: ``--help``; slow: run with ``--model tiny-gpt2``.
- ``make TARGET``: the target exists (``make -n TARGET`` succeeds in the repository).
- ``pip install ...``: each argument is an existing local path with a pyproject.toml, or a package pinned in
  requirements.lock.
- ``tensorboard --logdir DIR``: DIR is the run folder (``trainer.default_root_dir`` or sweep ``root_dir``) of a
  config in configs/, and tensorboard is installed.
- ``sbatch [options] SCRIPT ARGS``: the script exists and passes ``bash -n``; every file argument exists.
- ``torchrun ... -m circuitft fit ...``: the circuitft part parses (``--print_config``).
- ``bash SCRIPT``: the script exists and passes ``bash -n``. ``mkdir``: run in the scratch folder.
- ``source .venv/bin/activate``: the file ``make install`` creates is named in the Makefile.

Commands run in-process (``circuitft.cli.main``) or as subprocesses, in one scratch folder per session that
holds links to configs/, benchmarks/ and the Makefile and a copy of demo/, so outputs never land in the checkout.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell"}
TINY_MODEL = "tiny-gpt2"
TINY_FIT = [
    "--model.model", TINY_MODEL, "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
    "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


# ---- extraction ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocCommand:
    """One documented command line: where it is and its words (``&&`` parts split)."""

    path: str
    line: int
    text: str
    parts: tuple[tuple[str, ...], ...] = field(compare=False)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def extract_commands(path: Path) -> list[DocCommand]:
    """The shell commands of one Markdown file, in order."""
    out: list[DocCommand] = []
    fence: str | None = None
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip().lower() or "text")
            continue
        if fence is None:
            continue
        line = stripped
        if not pending:
            if line.startswith("$ "):
                line = line[2:]
            elif fence not in SHELL_FENCES or not line or line.startswith("#"):
                continue
            start = number
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        out.append(_command(path, start, pending))
        pending = ""
    return out


def _command(path: Path, line: int, text: str) -> DocCommand:
    words = shlex.split(text, comments=True)
    parts, current = [], []
    for word in words:
        if word == "&&":
            parts.append(tuple(current))
            current = []
        else:
            current.append(word)
    parts.append(tuple(current))
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    return DocCommand(name, line, text.strip(), tuple(_normal(p) for p in parts))


def _normal(words: tuple[str, ...]) -> tuple[str, ...]:
    """``.venv/bin/X`` -> ``X``; ``python -m circuitft`` -> ``circuitft``."""
    words = tuple(w.removeprefix(".venv/bin/") if i == 0 else w for i, w in enumerate(words))
    if words[:3] == ("python", "-m", "circuitft"):
        words = ("circuitft", *words[3:])
    return words


# ---- the scratch folder and helpers -------------------------------------------------------------------
@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like the checkout for the commands: configs/ etc. linked, demo/ copied."""
    root = tmp_path_factory.mktemp("doc-commands")
    for name in ("configs", "benchmarks", "Makefile", "pyproject.toml", "requirements.lock"):
        (root / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "demo", root / "demo", ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
    return root


def run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    """``circuitft ARGS`` in this process, in ``cwd``; returns (exit status, stdout + stderr)."""
    from circuitft.cli import main

    buffer = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                status = main(args)
            except SystemExit as stop:  # argparse / LightningCLI (--help, --print_config) exit by themselves
                status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(old)
    return status, buffer.getvalue()


def run_process(args: list[str], cwd: Path, timeout: int = 600) -> tuple[int, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _ok(cmd: DocCommand, status: int, output: str, shown: list[str]) -> None:
    assert status == 0, f"{cmd.where}: `{' '.join(shown)}` exited {status}:\n{output[-3000:]}"


def _with_option(words: list[str], option: str, value: str) -> list[str]:
    """Replace the value of ``option`` (or append it)."""
    if option in words:
        i = words.index(option)
        return [*words[: i + 1], value, *words[i + 2 :]]
    return [*words, option, value]


def _sub_words(words: tuple[str, ...]) -> list[str]:
    """The (sub)command words after ``circuitft``: ``tasks make``, ``bench eap`` -> ``bench``, ..."""
    out = [words[1]]
    if words[1] in ("tasks", "circuitlora") and len(words) > 2 and not words[2].startswith("-"):
        out.append(words[2])
    return out


def _options(words: tuple[str, ...]) -> set[str]:
    return {w.split("=")[0] for w in words if w.startswith("--") and w != "--"}


def tiny_run(scratch: Path, folder: str) -> Path:
    """A finished tiny run (configs/quick.yaml) at ``folder`` inside the scratch folder, made once."""
    target = scratch / folder
    if not (target / "checkpoints" / "last.ckpt").is_file():
        args = ["fit", "--config", "configs/quick.yaml", "--trainer.default_root_dir", str(target)]
        status, output = run_cli(args, scratch)
        assert status == 0, f"making the tiny run {folder} failed:\n{output[-3000:]}"
    return target


# ---- checks: each takes (command, one &&-part of it, scratch folder) --------------------------------
Check = Callable[[DocCommand, tuple[str, ...], Path], None]


def check_help(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    """``--help`` of the (sub)command is printed and names every option the documented command uses."""
    sub = [] if words[1:2] in ((), ("--help",)) else _sub_words(words)
    status, output = run_cli([*sub, "--help"], scratch)
    _ok(cmd, status, output, ["circuitft", *sub, "--help"])
    assert "usage" in output.lower(), f"{cmd.where}: no help text from `circuitft {' '.join(sub)} --help`"
    missing = [o for o in _options(words) if o != "--help" and o not in output]
    assert not missing, f"{cmd.where}: `circuitft {' '.join(sub)} --help` does not list {missing}"


def check_run_as_shown(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    status, output = run_cli(list(words[1:]), scratch)
    _ok(cmd, status, output, list(words))
    assert output.strip(), f"{cmd.where}: `{' '.join(words)}` printed nothing"


def check_print_config_to_file(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    """``circuitft CMD ... --print_config > FILE``: the printed YAML is written to FILE and reads back."""
    import yaml

    args, target = list(words[1 : words.index(">")]), words[-1]
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])
    assert isinstance(yaml.safe_load(output), dict), f"{cmd.where}: --print_config printed no YAML mapping"
    (scratch / target).write_text(output)
    again = [args[0], "--config", target, "--print_config"]
    status, reread = run_cli(again, scratch)
    _ok(cmd, status, reread, ["circuitft", *again])
    assert yaml.safe_load(reread) == yaml.safe_load(output), f"{cmd.where}: {target} does not read back"


def _written_by_docs(scratch: Path, name: str) -> None:
    """Make ``name`` in ``scratch`` by the documented command that writes it (``... > name``)."""
    for doc in COMMANDS:
        for part in doc.parts:
            if part[-2:] == (">", name):
                check_print_config_to_file(doc, part, scratch)
                return


def check_run_tiny_model(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = _with_option(list(words[1:]), "--model", TINY_MODEL)
    if "--config" in args and not (scratch / args[args.index("--config") + 1]).exists():
        _written_by_docs(scratch, args[args.index("--config") + 1])  # the config the guide made before
    if "--graph" in args:  # evaluating a saved graph: make it first if the command before it did not run
        graph = scratch / args[args.index("--graph") + 1]
        if not graph.is_file():
            data = args[args.index("--data") + 1]
            made = ["circuit", "--model", TINY_MODEL, "--data", data, "--out", str(graph.parent), "--quiet"]
            _ok(cmd, *run_cli(made, scratch), made)
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])


def check_fit_parses(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = [w for w in words[1:] if w != "--print_config"] + ["--print_config"]
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])
    assert "model:" in output and "data:" in output, (
        f"{cmd.where}: --print_config printed no config:\n{output}"
    )


def check_fit_runs_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = list(words[1:])
    target = scratch / "runs" / f"doc_{cmd.line}"
    if "--ckpt_path" in args:  # resuming: the run must exist first
        resume = args[: args.index("--ckpt_path")] + args[args.index("--ckpt_path") + 2 :]
        made = [*resume, *TINY_FIT, "--trainer.default_root_dir", str(target)]
        _ok(cmd, *run_cli(made, scratch), made)
    args = [*args, *TINY_FIT, "--trainer.default_root_dir", str(target)]
    config_text = (scratch / args[args.index("--config") + 1]).read_text()
    if "circuit_lora" in config_text:  # tiny-gpt2 has 2 layers: 1 critical layer, a 2-step probe
        args += ["--model.circuit_lora.k", "1", "--model.circuit_lora.probe_steps", "2"]
    if "query_key_value" in config_text:  # GPT-NeoX module names: the tiny NeoX
        args += ["--model.model", "tiny-neox"]
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])
    assert (target / "config.yaml").is_file(), f"{cmd.where}: the tiny run wrote no config.yaml"


def _sweep_args(words: tuple[str, ...]) -> tuple[list[str], list[str]]:
    args = list(words[1:])
    extra = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    extra = [
        w
        for i, w in enumerate(extra)
        if not (w == "--model.model" or (i and extra[i - 1] == "--model.model"))
    ]
    return args, extra


def check_sweep_dry_run(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args, extra = _sweep_args(words)
    args = [a for a in args if a != "--dry_run"] + ["--dry_run", "--", *extra, "--model.model", TINY_MODEL]
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])


def check_parses_or_dry_run(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    """A fit parses (``--print_config``), a sweep passes ``--dry_run``."""
    (check_fit_parses if words[1] == "fit" else check_sweep_dry_run)(cmd, words, scratch)


def check_sweep_first_run_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args, extra = _sweep_args(words)
    config = scratch / args[args.index("--config") + 1]
    from circuitft.commands.sweep import load_sweep

    _, root, runs = load_sweep(config)
    args = [*args, "--shard", f"0/{len(runs)}", "--", *extra, *TINY_FIT]
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])
    assert (scratch / root / runs[0].name / "DONE").is_file(), f"{cmd.where}: the first run did not finish"


def check_report_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = list(words[1:])
    runs = [a for a in args[1:] if not a.startswith("-") and args[args.index(a) - 1] not in ("--out",)]
    for run in runs:
        if not any((scratch / run).rglob("metrics.jsonl")):  # absent, or a 2-step run without circuits
            tiny_run(scratch, f"{run}/tiny" if "pairs" in run else run)
    status, output = run_cli(args, scratch)
    _ok(cmd, status, output, ["circuitft", *args])
    assert (scratch / args[args.index("--out") + 1] / "index.html").is_file()


def check_export_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    ckpt = Path(words[2])
    tiny_run(scratch, str(ckpt.parent.parent))
    status, output = run_cli(list(words[1:]), scratch)
    _ok(cmd, status, output, list(words))
    assert (scratch / words[words.index("--out") + 1] / "adapter_config.json").is_file()


def check_export_graph_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    graph = Path(words[2])
    tiny_run(scratch, str(graph.parent.parent.parent))
    status, output = run_cli(list(words[1:]), scratch)
    _ok(cmd, status, output, list(words))
    assert (scratch / words[words.index("--out") + 1] / "circuit.graphml").is_file()


def check_bench_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = _with_option(list(words[1:]), "--model", TINY_MODEL)
    args += ["--batch_size", "2", "--seq_len", "8", "--batches", "1", "--ig_steps", "2", "--repeats", "1"]
    _ok(cmd, *run_cli(args, scratch), args)


@functools.cache
def _script_help(script: str, scratch: Path) -> tuple[int, str]:
    return run_process([sys.executable, script, "--help"], scratch)


def check_walkthrough_help(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    status, output = _script_help(words[1], scratch)
    _ok(cmd, status, output, [*words, "--help"])
    assert "usage" in output and all(o in output for o in _options(words)), output


def check_walkthrough_tiny(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    args = _with_option(list(words[1:]), "--model", TINY_MODEL) + ["--out", str(scratch / f"wt_{cmd.line}")]
    _ok(cmd, *run_process([sys.executable, *args], scratch), args)


def check_make_target(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    for target in words[1:]:
        status, output = run_process(["make", "-n", target], REPO)
        assert status == 0, f"{cmd.where}: `make {target}` is not a target of the Makefile: {output}"


def check_pip_install(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for arg in [w for w in words[2:] if not w.startswith("-")]:
        if arg.startswith("."):
            assert (REPO / arg.split("[")[0] / "pyproject.toml").is_file(), (
                f"{cmd.where}: no project at {arg}"
            )
        else:
            assert arg.lower() in pinned, f"{cmd.where}: {arg} is not pinned in requirements.lock"


def _run_folders() -> set[str]:
    folders = set()
    for path in (REPO / "configs").rglob("*.yaml"):
        spec = yaml.safe_load(path.read_text()) or {}
        folders.add(str((spec.get("trainer") or {}).get("default_root_dir")))
        folders.add(str(spec.get("root_dir")))
    return folders


def check_tensorboard(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    assert shutil.which("tensorboard") or (Path(sys.executable).parent / "tensorboard").is_file()
    logdir = words[words.index("--logdir") + 1]
    assert logdir in _run_folders(), f"{cmd.where}: {logdir} is the run folder of no config in configs/"


def _bash_syntax(cmd: DocCommand, script: Path) -> None:
    assert script.is_file(), f"{cmd.where}: {script} does not exist"
    status, output = run_process(["bash", "-n", str(script)], REPO)
    assert status == 0, f"{cmd.where}: {script} has a bash syntax error: {output}"


def check_sbatch(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    files = [w for w in words[1:] if not w.startswith("-")]
    _bash_syntax(cmd, REPO / files[0])
    for name in files[1:]:
        assert (REPO / name).is_file(), f"{cmd.where}: {name} does not exist"


def check_bash_script(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    _bash_syntax(cmd, REPO / words[1])


def check_torchrun_fit(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    i = words.index("-m")
    assert words[i + 1] == "circuitft", f"{cmd.where}: torchrun must start circuitft"
    check_fit_parses(cmd, ("circuitft", *words[i + 2 :]), scratch)


def check_mkdir(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    _ok(cmd, *run_process(list(words), scratch), list(words))


def check_activate(cmd: DocCommand, words: tuple[str, ...], scratch: Path) -> None:
    assert words[1] == ".venv/bin/activate" and "VENV := .venv" in (REPO / "Makefile").read_text()


# ---- the table: command pattern -> fast check, slow check ---------------------------------------------
@dataclass(frozen=True)
class Rule:
    """Commands whose words (joined by spaces) match ``pattern`` get these checks."""

    pattern: str
    fast: Check | None
    slow: Check | None = None


RULES: list[Rule] = [
    Rule(r"^circuitft( --help)?$", check_help),
    Rule(r"^circuitft \w+ --help$", check_help),
    # The prior experiments (Pythia-sized data, minutes per run even on tiny GPT-2): the fast check parses the
    # fit / dry-runs the sweep; tests/commands/test_experiment_configs.py trains every one of them (and every
    # kind of sweep run) for 2 steps on tiny GPT-2 in the slow suite.
    Rule(r"^circuitft (fit|sweep) --config configs/experiments/", check_parses_or_dry_run),
    Rule(r"^circuitft \w+ .*--print_config > \S+$", check_print_config_to_file),  # only prints: no slow run
    Rule(r"^circuitft (fit|validate|test) .*--print_config", check_fit_parses),  # it only prints: no slow run
    Rule(r"^circuitft (fit|validate|test) ", check_fit_parses, check_fit_runs_tiny),
    Rule(r"^circuitft sweep .*--dry_run", check_sweep_dry_run),  # it only lists: no slow run
    Rule(r"^circuitft sweep ", check_sweep_dry_run, check_sweep_first_run_tiny),
    Rule(r"^circuitft tasks (list|show|make)\b", check_run_as_shown),
    Rule(r"^circuitft tasks check ", check_run_tiny_model),
    Rule(r"^circuitft circuit ", check_help, check_run_tiny_model),
    Rule(r"^circuitft report ", check_help, check_report_tiny),
    Rule(r"^circuitft export ", check_help, check_export_tiny),
    Rule(r"^circuitft export-graph ", check_help, check_export_graph_tiny),
    Rule(r"^circuitft bench eap ", check_help, check_bench_tiny),
    Rule(r"^python demo/walkthrough\.py\b", check_walkthrough_help, check_walkthrough_tiny),
    Rule(r"^make \w", check_make_target),
    Rule(r"^pip install ", check_pip_install),
    Rule(r"^tensorboard --logdir ", check_tensorboard),
    Rule(r"^sbatch ", check_sbatch),
    Rule(r"^torchrun .* -m circuitft fit ", check_torchrun_fit),
    Rule(r"^bash \S+\.sh\b", check_bash_script),
    Rule(r"^mkdir -p \S+$", check_mkdir),
    Rule(r"^source \.venv/bin/activate$", check_activate),
]


def rule_for(words: tuple[str, ...]) -> Rule | None:
    text = " ".join(words)
    return next((rule for rule in RULES if re.search(rule.pattern, text)), None)


COMMANDS = [c for path in DOC_FILES for c in extract_commands(path)]


def _params(kind: str) -> list:
    params = []
    for cmd in COMMANDS:
        rules = [rule_for(words) for words in cmd.parts]
        if kind == "slow" and not any(r and r.slow for r in rules):
            continue
        params.append(pytest.param(cmd, id=f"{cmd.where} {cmd.text[:60]}"))
    return params


def _check(cmd: DocCommand, kind: str, scratch: Path) -> None:
    for words in cmd.parts:
        rule = rule_for(words)
        if rule is None:
            pytest.fail(
                f"{cmd.where}: no rule for the documented command `{' '.join(words)}`; add one to RULES in "
                f"tests/docs/test_commands.py (how to run it cheaply, or how else to check it)",
                pytrace=False,
            )
        check = rule.fast if kind == "fast" else rule.slow
        if check is not None:
            check(cmd, words, scratch)


# ---- tests --------------------------------------------------------------------------------------------
def test_commands_are_found() -> None:
    """The extraction sees the guide's commands (a broken parser would make every other test vacuous)."""
    texts = [c.text for c in COMMANDS]
    assert "make demo" in texts and "make test" in texts
    assert any(t.startswith("circuitft report runs/demo") for t in texts)
    assert any(c.path.startswith("docs/") for c in COMMANDS)
    assert len(COMMANDS) >= 30


def test_extraction_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```bash\n# comment\nmake demo   # trailing\n$ circuitft tasks list\ncircuitft fit \\\n"
        "  --config a.yaml\nmkdir -p logs && sbatch x.sbatch\n```\n```console\n$ circuitft --help\noutput\n```\n"
        "```\nplain output\n$ make test\n```\n```yaml\nkey: value\n```\n"
    )
    found = [(c.line, c.parts) for c in extract_commands(page)]
    assert found == [
        (4, (("make", "demo"),)),
        (5, (("circuitft", "tasks", "list"),)),
        (6, (("circuitft", "fit", "--config", "a.yaml"),)),
        (8, (("mkdir", "-p", "logs"), ("sbatch", "x.sbatch"))),
        (11, (("circuitft", "--help"),)),
        (16, (("make", "test"),)),
    ]


def test_an_unmapped_command_fails_naming_its_file_and_line(scratch: Path) -> None:
    cmd = _command(REPO / "README.md", 7, "frobnicate --all")
    with pytest.raises(pytest.fail.Exception, match=r"README\.md:7: no rule .*frobnicate.*add one to RULES"):
        _check(cmd, "fast", scratch)


@pytest.mark.parametrize("cmd", _params("fast"))
def test_documented_command_fast(cmd: DocCommand, scratch: Path) -> None:
    _check(cmd, "fast", scratch)


@pytest.mark.slow
@pytest.mark.parametrize("cmd", _params("slow"))
def test_documented_command_slow(cmd: DocCommand, scratch: Path) -> None:
    _check(cmd, "slow", scratch)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    heads = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_point_to_existing_files_and_headings(page: Path) -> None:
    """Relative links of the guide (files, images, #anchors) lead somewhere, so moved text leaves no dead ends."""
    problems = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for link in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", link):
                continue
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            shown = f"{page.relative_to(REPO)}:{number}: {link}"
            if not path.exists():
                problems.append(f"{shown}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                problems.append(f"{shown}: no heading #{anchor} in {path.relative_to(REPO)}")
    assert not problems, "\n".join(problems)
