"""One process per run folder: the lock, stale-lock takeover, fit and sweep refusing a busy folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitft.cli import main
from circuitft.runlock import LOCK_NAME, OWNER_ENV, RunLock, RunLocked, holder

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quick.yaml")
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _holder_process(folder: Path) -> subprocess.Popen:
    """Another process that takes the lock of ``folder`` and waits (prints 'locked' once it holds it)."""
    code = (
        "import sys, time; from circuitft.runlock import RunLock; "
        f"RunLock({str(folder)!r}).acquire(); print('locked', flush=True); time.sleep(120)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_second_lock_is_refused_and_names_the_holder(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    info = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    with pytest.raises(RunLocked) as err:
        RunLock(tmp_path / "run", key="--trainer.default_root_dir").acquire()
    msg = str(err.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in msg and "--trainer.default_root_dir" in msg
    lock.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    RunLock(tmp_path / "run").acquire().release()  # free again


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with RunLock(folder):
        assert holder(folder)["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead.pid}" in capsys.readouterr().err
    assert not (folder / LOCK_NAME).exists()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(RunLocked, match="pid 1 on host elsewhere.example"):
        RunLock(folder).acquire()


def test_killed_holder_leaves_a_stale_lock_and_sigterm_releases(tmp_path):
    folder = tmp_path / "run"
    p = _holder_process(folder)
    with pytest.raises(RunLocked, match=f"pid {p.pid} "):
        RunLock(folder).acquire()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    assert not (folder / LOCK_NAME).exists()  # released on SIGTERM
    p = _holder_process(folder)
    p.kill()
    p.wait()
    assert holder(folder)["pid"] == p.pid  # SIGKILL: no cleanup ...
    RunLock(folder).acquire().release()  # ... but the stale lock is taken over


def test_a_child_of_the_holder_with_the_owner_variable_uses_the_lock(tmp_path):
    folder = tmp_path / "run"
    with RunLock(folder):
        code = (
            f"from circuitft.runlock import RunLock; l = RunLock({str(folder)!r}).acquire(); "
            "assert not l.held; l.release(); print('ok')"
        )
        env = {**ENV, OWNER_ENV: str(os.getpid())}
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.stdout.strip() == "ok", r.stderr
        assert holder(folder)["pid"] == os.getpid()  # the child did not release the parent's lock
        r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
        assert r.returncode != 0 and "RunLocked" in r.stderr  # without the variable: refused


def test_fit_into_a_locked_folder_exits_2_at_once(tmp_path, capsys):
    root = tmp_path / "run"
    p = _holder_process(root)
    try:
        start = time.perf_counter()
        assert main(["fit", "--config", QUICK, "--trainer.default_root_dir", str(root)]) == 2
        seconds = time.perf_counter() - start
    finally:
        p.kill()
        p.wait()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and f"is in use by another circuitft run: pid {p.pid} on host" in err[0], err
    assert seconds < 30  # refused before the model is loaded or anything is trained
    assert sorted(x.name for x in root.iterdir()) == [LOCK_NAME]  # only the holder's lock


def test_sweep_skips_a_run_held_by_another_worker(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(f"fit_config: {QUICK}\nroot_dir: {tmp_path / 'runs'}\nruns: [{{name: a}}]\n")
    p = _holder_process(tmp_path / "runs" / "a")
    try:
        assert main(["sweep", "--config", str(f)]) == 2
    finally:
        p.kill()
        p.wait()
    err = capsys.readouterr().err
    assert f"run a: {tmp_path / 'runs' / 'a'} is in use by another circuitft run: pid {p.pid}" in err
    assert not (tmp_path / "runs" / "a" / "checkpoints").exists()  # not trained a second time


@pytest.mark.parametrize("shard", ["4/4", "0/0", "-1/3", "1/-2", "x"])
def test_bad_shard_is_one_line(tmp_path, capsys, shard):
    f = tmp_path / "s.yaml"
    f.write_text(f"fit_config: {QUICK}\nruns: [{{name: a}}]\n")
    assert main(["sweep", "--config", str(f), f"--shard={shard}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --shard"), err


@pytest.mark.slow
def test_two_fits_into_one_folder_at_once(tmp_path):
    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", QUICK, "--trainer.default_root_dir", str(root),
           "--trainer.enable_progress_bar", "false"]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=ENV, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs if p.stderr]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    winner = next(p for p, (rc, _) in zip(procs, results, strict=True) if rc == 0)
    assert f"in use by another circuitft run: pid {winner.pid}" in loser
    names = sorted(x.name for x in (root / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step000003.ckpt", "step000006.ckpt", "step000009.ckpt", "step000012.ckpt"]
    assert len(list(root.glob("events.out.tfevents.*"))) == 1 and not (root / LOCK_NAME).exists()
