"""TensorBoard's Circuits tab: the plugin's routes (in process), and a real `tensorboard --logdir RUN` (slow)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tensorboard.plugins import base_plugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

from analysis.synth import write_run
from circuitft.analysis.runs import read_run
from circuitft.explorer.board import CircuitsPlugin, find_circuit_runs, log_roots
from circuitft.explorer.pack import pack_graph, unpack_graph

TASKS = [("A", 10), ("B", 10)]
ANALYSES = {0: {"A": (0.1, 0.1), "B": (0.2, 0.15)}, 10: {"A": (0.9, 0.8), "B": (0.3, 0.2)}}


def _client(logdir: str) -> tuple[CircuitsPlugin, dict[str, Client]]:
    plugin = CircuitsPlugin(base_plugin.TBContext(logdir=logdir))
    return plugin, {route: Client(app, Response) for route, app in plugin.get_plugin_apps().items()}


def test_log_roots_and_discovery(tmp_path):
    write_run(tmp_path / "sweep" / "a", TASKS, ANALYSES)
    write_run(tmp_path / "sweep" / "b", TASKS, ANALYSES)
    (tmp_path / "sweep" / "empty").mkdir()
    assert log_roots(str(tmp_path)) == [("", tmp_path)]
    assert log_roots(f"s:{tmp_path / 'sweep'},{tmp_path / 'x'}") == [
        ("s", tmp_path / "sweep"),
        ("", tmp_path / "x"),
    ]
    assert list(find_circuit_runs(str(tmp_path / "sweep"))) == ["a", "b"]
    assert list(find_circuit_runs(str(tmp_path))) == ["sweep/a", "sweep/b"]
    assert find_circuit_runs(f"q:{tmp_path / 'sweep' / 'a'}") == {"q": tmp_path / "sweep" / "a"}
    assert find_circuit_runs(str(tmp_path / "sweep" / "a")) == {"a": tmp_path / "sweep" / "a"}


def test_routes(tmp_path):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    plugin, clients = _client(str(tmp_path / "run"))
    assert plugin.is_active() and plugin.frontend_metadata().tab_name == "Circuits"
    res = clients["/runs"].get("/runs")
    assert res.status_code == 200
    index = json.loads(res.get_data())
    assert index["errors"] == [] and len(index["runs"]) == 1
    run = index["runs"][0]
    assert run["name"] == "run" and run["tasks"] == ["A", "B"] and run["steps"]["A"] == [0, 10]
    res = clients["/graph"].get("/graph?run=run&task=B&step=10")
    assert res.status_code == 200
    packed = json.loads(res.get_data())
    want = pack_graph(read_run(tmp_path / "run").graph(10, "B"))
    np.testing.assert_array_equal(unpack_graph(packed)["score"], unpack_graph(want)["score"])
    assert clients["/graph"].get("/graph?run=run&task=B&step=5").status_code == 404
    assert clients["/graph"].get("/graph?run=nope&task=B&step=10").status_code == 400
    js = clients["/index.js"].get("/index.js")
    assert js.status_code == 200 and b"export async function render" in js.get_data()


def test_inactive_without_circuits_and_new_steps_appear(tmp_path):
    plugin, clients = _client(str(tmp_path))
    assert not plugin.is_active()
    write_run(tmp_path / "run", TASKS, {0: ANALYSES[0]})
    assert plugin.is_active()
    assert json.loads(clients["/runs"].get("/runs").get_data())["runs"][0]["steps"]["A"] == [0]
    # the run goes on: a later analysis is appended to metrics.jsonl (as the callback does while training)
    other = tmp_path / "later"
    write_run(other, TASKS, ANALYSES)
    lines = (other / "circuits" / "metrics.jsonl").read_text().splitlines()
    for step in ("step000010",):
        (tmp_path / "run" / "circuits" / step).mkdir()
        for f in (other / "circuits" / step).iterdir():
            (tmp_path / "run" / "circuits" / step / f.name).write_bytes(f.read_bytes())
    log = tmp_path / "run" / "circuits" / "metrics.jsonl"
    log.write_text(log.read_text() + "\n".join(x for x in lines if '"step": 10' in x) + "\n")
    steps = json.loads(clients["/runs"].get("/runs").get_data())["runs"]
    assert [r["steps"]["A"] for r in steps if r["name"] == "run"] == [[0, 10]]


# ---- a real TensorBoard (slow) -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tensorboard(logdir: Path) -> tuple[subprocess.Popen, str]:
    """`tensorboard --logdir LOGDIR` on a free localhost port; returns the process and its base URL."""
    port = free_port()
    tb = Path(sys.executable).parent / "tensorboard"
    proc = subprocess.Popen([str(tb), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tensorboard exited: {proc.stdout.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/data/plugins_listing", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("tensorboard did not answer within 120 s")


def get_json(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=60).read())


@pytest.mark.slow
def test_tensorboard_lists_the_plugin_and_serves_the_run(tmp_path):
    graphs = write_run(tmp_path / "run", TASKS, ANALYSES)
    proc, url = start_tensorboard(tmp_path / "run")
    try:
        listing = get_json(url + "/data/plugins_listing")
        assert listing["circuits"]["enabled"] is True
        assert listing["circuits"]["tab_name"] == "Circuits"
        index = get_json(url + "/data/plugin/circuits/runs")
        assert [(r["tasks"], r["steps"]) for r in index["runs"]] == [
            (["A", "B"], {"A": [0, 10], "B": [0, 10]})
        ]
        packed = get_json(url + "/data/plugin/circuits/graph?run=run&task=A&step=10")
        arrays = unpack_graph(packed)
        g = graphs[(10, "A")]
        want = g.edge_scores().numpy()
        order = np.argsort(-np.abs(want), kind="stable")[: packed["count"]]
        np.testing.assert_array_equal(arrays["score"], want[order])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
