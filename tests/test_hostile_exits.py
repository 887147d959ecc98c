"""Hostile conditions, clean exits: SIGTERM during a report leaves no temporary folder, written folders follow
the umask, the framework warnings of export and of a resume are silenced by name, paths work under any
locale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from analysis.synth import write_run
from circuitft.files import atomic_folder

REPO = Path(__file__).resolve().parents[1]
TASKS = [("A", 10), ("B", 10)]
ANALYSES = {0: {"A": (0.1, 0.1), "B": (0.2, 0.15)}, 10: {"A": (0.9, 0.8), "B": (0.3, 0.2)}}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", **extra}


def test_sigterm_during_report_removes_its_temporary_folder(tmp_path):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "circuitft", "report", str(tmp_path / "run"), "--out", str(tmp_path / "rep")],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".rep.") for p in tmp_path.iterdir()):  # the report is being written
        assert proc.poll() is None and time.monotonic() < deadline, "the report never started writing"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder, no half report


def test_sigterm_while_a_report_is_replaced_keeps_one_whole_report(tmp_path):
    """The swap itself holds SIGTERM back: afterwards there is exactly one folder, old or new, never none."""
    code = (
        "import os, signal, time; from pathlib import Path; from circuitft.files import atomic_folder\n"
        "def write(t):\n"
        "    (t / 'new').write_text('new')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the folder is written\n"
        f"atomic_folder(write, Path({str(tmp_path / 'rep')!r}), replace=True)\n"
    )
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "old").write_text("old")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 128 + signal.SIGTERM and "Traceback" not in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["old"]


def test_folders_written_follow_the_umask(tmp_path):
    def write(folder: Path) -> None:
        fd = os.open(folder / "private.bin", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors writes
        os.close(fd)
        (folder / "sub").mkdir(mode=0o700)
        (folder / "sub" / "x.txt").write_text("x")

    old = os.umask(0o022)
    try:
        atomic_folder(write, tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "private.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out" / "sub").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    import torch

    from circuitft.models import load_model
    from circuitft.models.checkpoint import wrap_lora

    peft_model = wrap_lora(load_model("tiny-gpt2").model, r=2, alpha=4.0, dropout=0.0)
    state = {f"model.{n}": p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    hp = {"model": "tiny-gpt2", "model_seed": 0, "lora_r": 2, "lora_alpha": 4.0, "target_modules": "auto"}
    path = tmp_path / "run" / "checkpoints" / "step000001.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": hp, "state_dict": state, "global_step": 1}, path)
    return path


def test_export_follows_the_umask_and_prints_no_framework_warning(tmp_path, ckpt):
    out = tmp_path / "adapter"
    code = "import os, sys; os.umask(0o022); from circuitft.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run(
        [sys.executable, "-c", code, "export", str(ckpt), "--out", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "is_gradient_checkpointing" not in res.stderr, res.stderr
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_the_resume_warning_of_lightning_is_silenced_by_name():
    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    from circuitft.quiet import quiet_framework

    text = (
        "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not "
        "resumable. This can cause unreliable results if further training is done."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_framework()
        warnings.warn(text, PossibleUserWarning, stacklevel=1)
        warnings.warn("another warning", PossibleUserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another warning"]


# ---- locale ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("locale", ["C", "POSIX", "C.UTF-8"])
def test_report_with_non_ascii_paths_under_any_locale(tmp_path, locale):
    write_run(tmp_path / "läuft ünïcode", TASKS, ANALYSES)
    out = tmp_path / "bericht ß"
    env = _env(LC_ALL=locale, LANG=locale)
    env.pop("PYTHONUTF8", None)
    env.pop("PYTHONIOENCODING", None)
    res = subprocess.run(
        [sys.executable, "-m", "circuitft", "report", str(tmp_path / "läuft ünïcode"), "--out", str(out)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_names_the_locale_cannot_decode_are_one_line(tmp_path, locale):
    sweep = tmp_path / "sweep"
    write_run(sweep / "ok", TASKS, ANALYSES)
    os.rename(sweep / "ok", os.fsencode(sweep) + b"/run\xff")
    env = _env(LC_ALL=locale, LANG=locale)
    for args in (
        [str(sweep), "--out", str(tmp_path / "rep")],
        [str(tmp_path), "--out", os.fsencode(tmp_path) + b"/r\xff"],
    ):
        res = subprocess.run(
            [sys.executable, "-m", "circuitft", "report", *args], env=env, capture_output=True, timeout=300
        )
        err = res.stderr.decode("utf-8", "replace")
        assert res.returncode == 2 and "Traceback" not in err and err.count("\n") == 1, err
        assert "\\xff: the name is not valid UTF-8 text" in err
    assert not (tmp_path / "rep").exists()
