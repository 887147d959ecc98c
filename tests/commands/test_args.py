"""One CLI style: circuit, tasks, sweep, bench and export on jsonargparse, through ``circuitft.cli.main``.

Each takes ``--config FILE`` and ``--print_config`` (whose output loads back with ``--config``), lists every
option with its default in ``--help``, and reports a bad option in one line (exit 2, no traceback)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from circuitft.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICK_PAIRS = REPO / "configs" / "quick_pairs.yaml"


def cli(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# command prefix, options for --print_config (every kind: paths, booleans, lists, null, positionals)
COMMANDS = {
    "circuit": (
        ["circuit"],
        [
            "--model",
            "tiny-gpt2",
            "--data",
            "rows.csv",
            "--method",
            "EAP",
            "--top_n",
            "7",
            "--prepend_bos",
            "false",
            "--quiet",
            "--adapter",
            "adapters/a",
            "--out",
            "out/c",
        ],
    ),
    "tasks show": (["tasks", "show"], ["Add", "--n", "2", "--param", "lo=0", "hi=9", "--split", "val"]),
    "tasks make": (["tasks", "make"], ["AddSub", "--n", "3", "--seed", "4", "--no-bos", "--out", "x.jsonl"]),
    "tasks check": (["tasks", "check"], ["rows.csv", "--model", "tiny-gpt2", "--no_bos", "true"]),
    "sweep": (
        ["sweep"],
        ["--config", str(QUICK_PAIRS), "--shard", "1/2", "--dry_run", "--", "--model.lr", "0.1"],
    ),
    "bench": (["bench"], ["eap", "--model", "tiny-gpt2", "--threads", "1", "--device", "cpu"]),
    "export": (["export"], ["runs/x/checkpoints/last.ckpt", "--out", "adapters/x"]),
}


def with_print_config(options: list[str]) -> list[str]:
    """``options`` with ``--print_config`` before a ``--`` (after it, everything is a fit argument)."""
    i = options.index("--") if "--" in options else len(options)
    return [*options[:i], "--print_config", *options[i:]]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_print_config_loads_back_with_config(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    prefix, options = COMMANDS[command]
    code, printed, err = cli(capsys, *prefix, *with_print_config(options))
    assert code == 0 and err == "", err
    first = yaml.safe_load(printed)
    assert isinstance(first, dict) and first
    saved = tmp_path / "elsewhere" / "options.yaml"  # not next to any file it names
    saved.parent.mkdir()
    saved.write_text(printed)
    monkeypatch.chdir(tmp_path)
    code, again, err = cli(capsys, *prefix, "--config", saved, "--print_config")
    assert code == 0 and err == "", err
    assert yaml.safe_load(again) == first
    # and an option after --config overrides the file
    key = "seed" if "seed" in first else "model" if "model" in first and first["model"] else None
    if key is not None:
        value = "5" if key == "seed" else "other-model"
        code, over, _ = cli(capsys, *prefix, "--config", saved, f"--{key}", value, "--print_config")
        assert code == 0 and str(yaml.safe_load(over)[key]) == value


def test_print_config_values(capsys: pytest.CaptureFixture) -> None:
    prefix, options = COMMANDS["circuit"]
    printed = yaml.safe_load(cli(capsys, *prefix, *options, "--print_config")[1])
    assert printed["top_n"] == 7 and printed["top_frac"] is None and printed["prepend_bos"] is False
    assert printed["quiet"] is True and printed["adapter"] == "adapters/a" and printed["ig_steps"] == 5
    prefix, options = COMMANDS["tasks make"]
    printed = yaml.safe_load(cli(capsys, *prefix, *options, "--print_config")[1])
    assert printed == {
        "name": "AddSub",
        "n": 3,
        "seed": 4,
        "split": "all",
        "param": [],
        "out": "x.jsonl",
        "model": None,
        "no_bos": True,
    }
    prefix, options = COMMANDS["sweep"]
    printed = yaml.safe_load(cli(capsys, *prefix, *with_print_config(options))[1])
    assert printed["fit_config"] == str(REPO / "configs" / "quick.yaml")  # absolute: loads from anywhere
    assert printed["root_dir"] == "runs/quick_pairs" and printed["shard"] == "1/2"
    assert printed["permutations"]["tasks"] == ["FloorDiv", "Modulo", "Abs"]
    assert printed["extra"] == ["--model.lr", "0.1"] and printed["dry_run"] is True


def test_a_config_file_runs_the_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """tasks make from a config file writes the same rows as from the command line."""
    out_cli, out_cfg = tmp_path / "cli.csv", tmp_path / "cfg.csv"
    argv = ["AddSub", "--n", "4", "--seed", "3", "--param", "lo=0", "hi=9"]
    assert cli(capsys, "tasks", "make", *argv, "--out", out_cli)[0] == 0
    config = tmp_path / "make.yaml"
    config.write_text(
        yaml.safe_dump({"name": "AddSub", "n": 4, "seed": 3, "param": ["lo=0", "hi=9"], "out": str(out_cfg)})
    )
    assert cli(capsys, "tasks", "make", "--config", config)[0] == 0
    assert out_cfg.read_text() == out_cli.read_text() and len(out_cli.read_text().splitlines()) == 5


def test_circuit_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("clean,corrupted,answer\n59+63=,59+15=,122\n72-61=,72-69=,11\n")
    config = tmp_path / "circuit.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": "tiny-gpt2",
                "data": str(data),
                "method": "EAP",
                "top_n": 9,
                "quiet": True,
                "out": str(tmp_path / "out"),
            }
        )
    )
    code, out, err = cli(capsys, "circuit", "--config", config, "--seed", "2")
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method"] == "EAP" and metrics["seed"] == 2 and metrics["n_examples"] == 2
    assert metrics["selection"]["option"] == "top_n" and metrics["selection"]["value"] == 9


HELP = {
    "circuit": ["circuit"],
    "tasks": ["tasks"],
    "tasks show": ["tasks", "show"],
    "tasks make": ["tasks", "make"],
    "tasks check": ["tasks", "check"],
    "sweep": ["sweep"],
    "bench": ["bench"],
    "export": ["export"],
}
NOT_OPTIONS = ("-h, --help", "--config CONFIG", "--print_config", "--permutations CONFIG")


def _help_entries(text: str) -> dict[str, str]:
    """Option or positional entry (its first line) -> its whole text, from argparse-style help."""
    entries: dict[str, str] = {}
    current = None
    for line in text.split("\nsubcommands:")[0].splitlines():
        m = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", line)
        if m and not line.startswith("   ") and not line.strip().endswith(":"):
            current = m.group(1)
            entries[current] = m.group(2) or ""
        elif current is not None and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("command", list(HELP))
def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture, command: str) -> None:
    code, out, _ = cli(capsys, *HELP[command], "--help")
    assert code == 0 and "(see docs)" not in out
    entries = {k: v for k, v in _help_entries(out).items() if not k.startswith(NOT_OPTIONS)}
    options = [k for k in entries if k.startswith("--")]
    assert options or command == "tasks", out
    for entry, text in entries.items():
        if entry.startswith("--") or entry.isupper():
            assert re.search(r"default: |required", text), f"{command}: {entry} has no default: {text}"
            assert len(text.split("(type:")[0].strip()) > 5, f"{command}: {entry} is not described"


def test_sweep_help_documents_the_sweep_file(capsys: pytest.CaptureFixture) -> None:
    out = cli(capsys, "sweep", "--help")[1]
    for option in (
        "--fit_config",
        "--root_dir",
        "--args",
        "--permutations.tasks",
        "--permutations.length",
        "--permutations.stage",
        "--runs",
        "--shard",
        "--only",
        "--dry_run",
        "extra",
    ):
        assert option in out
    assert "default: 0/1" in out and "default: 2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--ig_steps", "x"],
            "--ig_steps: expected an integer, got 'x'",
        ),
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--prepend_bos", "maybe"],
            "--prepend_bos: expected true or false, got 'maybe'",
        ),
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--accuracy", "top5"],
            "--accuracy: expected one of exact_match, first_token, got 'top5'",
        ),
        (["circuit", "--out", "o"], "the following arguments are required: --data"),
        (["circuit", "--data", "x.csv", "--out", "o", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--top_n", "3", "--greedy_n", "4"],
            "give only one of --top_n, --top_frac, --threshold, --greedy_n; got --top_n and --greedy_n",
        ),
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--threshold", "0.1", "--top_frac", "0.2"],
            "give only one of --top_n, --top_frac, --threshold, --greedy_n; got --top_frac and --threshold",
        ),
        (
            ["circuit", "--data", "x.csv", "--out", "o", "--adapter", "a", "--ckpt", "b.ckpt"],
            "give only one of --adapter, --ckpt; got --adapter and --ckpt",
        ),
        (["circuit", "--config", "MISSING"], "config file MISSING does not exist"),
        (["tasks", "make", "Add", "--n", "x"], "--n: expected an integer, got 'x'"),
        (
            ["tasks", "show", "Add", "--split", "dev"],
            "--split: expected one of train, val, test, all, got 'dev'",
        ),
        (["tasks", "check", "rows.csv"], "rows.csv: file not found"),  # --model defaults to SmolLM2
        (["tasks", "make", "--n", "3"], "the following arguments are required: NAME"),
        (["tasks"], "missing ACTION: one of list, show, make, check"),
        (["sweep", "--config", str(QUICK_PAIRS), "--shard", "2/2"], "--shard 2/2: need 0 <= i < N"),
        (
            ["sweep", "--config", str(QUICK_PAIRS), "--only", "Abs__Nope"],
            "--only Abs__Nope: no run of that name in the sweep",
        ),
        (
            ["sweep", "--config", str(QUICK_PAIRS), "--dry_run", "perhaps"],
            "--dry_run: expected true or false, got 'perhaps'",
        ),
        (["sweep", "--shard", "0/1"], "sweep: missing fit_config"),
        (["bench", "flops"], "BENCHMARK: expected one of eap, got 'flops'"),
        (["bench", "eap", "--repeats", "1.5"], "--repeats: expected an integer, got '1.5'"),
        (["export", "--out", "x"], "the following arguments are required: CKPT"),
    ],
)
def test_bad_options_are_one_line_exit_2(
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("command", "body", "message"),
    [
        (
            ["circuit"],
            "data: x.csv\nout: o\nig_steps: many\n",
            "--ig_steps: expected an integer, got 'many' (from config file CFG)",
        ),
        (
            ["circuit"],
            "data: x.csv\nout: o\nsteps: 3\n",
            "unknown option 'steps' (from config file CFG); valid: ",
        ),
        (["tasks", "make"], "name: Add\nn: 3\nrows: 4\n", "unknown option 'rows' (from config file CFG)"),
        (["circuit"], "data: [x.csv\n", "config file CFG: line 2, column 1: malformed YAML"),
        (
            ["sweep"],
            f"fit_config: {QUICK_PAIRS}\npermutations: {{taskz: [Add]}}\n",
            "unknown option 'permutations.taskz' (from config file CFG)",
        ),
        (
            ["sweep"],
            "fit_config: missing.yaml\nruns: [{name: a}]\n",
            "--fit_config: file does not exist: 'TMP/missing.yaml' (from config file CFG)",
        ),
        (
            ["sweep"],
            f"fit_config: {QUICK_PAIRS}\npermutations: [Add, Sub]\n",
            "permutations must be a mapping",
        ),
        (
            ["sweep"],
            f"fit_config: {QUICK_PAIRS}\nruns: [{{name: a, arg: [--x]}}]\n",
            "runs[0]: unknown keys ['arg']; valid: ['args', 'name']",
        ),
    ],
)
def test_bad_config_files_are_one_line_exit_2(
    capsys: pytest.CaptureFixture, tmp_path: Path, command: list[str], body: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    code, out, err = cli(capsys, *command, "--config", config)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert message.replace("CFG", str(config)).replace("TMP", str(tmp_path)) in err, err


def test_flags_take_true_false_or_nothing(capsys: pytest.CaptureFixture) -> None:
    for given, expected in (
        ([], False),
        (["--quiet"], True),
        (["--quiet", "true"], True),
        (["--quiet", "false"], False),
        (["--quiet=true"], True),
    ):
        printed = cli(capsys, "circuit", "--data", "d", "--out", "o", *given, "--print_config")[1]
        assert yaml.safe_load(printed)["quiet"] is expected, given
