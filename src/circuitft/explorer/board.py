"""TensorBoard's **Circuits** tab: a dynamic plugin (entry point ``tensorboard_plugins`` -> ``circuits``).

TensorBoard finds it through the entry point that installing circuitft registers, and shows the tab whenever
a run under its ``--logdir`` (or ``--logdir_spec``) has analysed circuits (``circuits/metrics.jsonl``; runs
are looked for in the log folder itself and two levels below it). Routes, under ``/data/plugin/circuits``:

- ``/index.js``: the tab's ES module (the explorer component, :func:`circuitft.explorer.page.board_module`);
- ``/runs``: ``{"runs": [run index, ...], "errors": [...]}`` (:func:`circuitft.explorer.pack.run_index`:
  tasks, analysed steps, curves, layout), re-read whenever a run's ``metrics.jsonl`` changes, so new steps
  appear while the run trains;
- ``/graph?run=R&task=T&step=S``: that graph's strongest edges (:func:`circuitft.explorer.pack.pack_graph`).

TensorBoard imports every installed plugin when it starts, so the modules that pull in torch and pandas are
imported inside the route handlers, on the first request, not here.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from circuitft.errors import CircuitftError
from circuitft.runfolder import RunFolder

PLUGIN_NAME = "circuits"
SEARCH_DEPTH = 2  # sub-folder levels below a log folder searched for runs


def log_roots(logdir: str) -> list[tuple[str, Path]]:
    """``(name prefix, folder)`` of the log folders in ``--logdir`` or a ``--logdir_spec`` (``name:path,...``)."""
    if not logdir:
        return []
    if Path(logdir).is_dir():
        return [("", Path(logdir))]
    roots = []
    for spec in logdir.split(","):
        name, sep, path = spec.partition(":")
        if not sep or "/" in name or "://" in spec or re.match(r"[A-Za-z]:\\", spec):
            name, path = "", spec
        roots.append((name, Path(path)))
    return roots


def find_circuit_runs(logdir: str) -> dict[str, Path]:
    """Run name -> folder of every run with ``circuits/metrics.jsonl`` in the log folders."""
    runs: dict[str, Path] = {}
    for prefix, root in log_roots(logdir):
        todo = [(root, 0)]
        while todo:
            folder, depth = todo.pop(0)
            if RunFolder(folder).records.is_file():
                rel = folder.relative_to(root).as_posix()
                name = "/".join(p for p in (prefix, "" if rel == "." else rel) if p) or folder.name
                runs[name] = folder
            elif depth < SEARCH_DEPTH and folder.is_dir():
                try:
                    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    continue
                todo += [(p, depth + 1) for p in subs]
    return runs


class CircuitsPlugin(base_plugin.TBPlugin):
    """The Circuits tab: the run's circuits, step by step, in the explorer component."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._logdir = context.logdir or ""
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[float, int], Any, dict[str, Any]]] = {}

    def get_plugin_apps(self) -> dict[str, Any]:
        """The plugin's routes."""
        return {"/index.js": self._serve_module, "/runs": self._serve_runs, "/graph": self._serve_graph}

    def is_active(self) -> bool:
        """Whether any run in the log folders has analysed circuits."""
        return bool(find_circuit_runs(self._logdir))

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        """An ES-module tab named Circuits."""
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Circuits")

    # ---- data -----------------------------------------------------------------------------------------
    def _run(self, name: str, folder: Path) -> tuple[Any, dict[str, Any]]:
        """The run's RunData and index, re-read when its metrics.jsonl changed."""
        from circuitft.analysis.runs import (
            read_run,
        )  # torch, pandas: when the tab asks, not when TensorBoard starts
        from circuitft.explorer.pack import run_index

        stat = RunFolder(folder).records.stat()
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        run = read_run(folder)
        run.name = name
        index = run_index(run)
        with self._lock:
            self._cache[name] = (stamp, run, index)
        return run, index

    # ---- routes ---------------------------------------------------------------------------------------
    @wrappers.Request.application
    def _serve_module(self, request: wrappers.Request) -> wrappers.Response:
        from circuitft.explorer.page import board_module

        return _respond(request, board_module(), "application/javascript")

    @wrappers.Request.application
    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        runs, errors = [], []
        for name, folder in find_circuit_runs(self._logdir).items():
            try:
                runs.append(self._run(name, folder)[1])
            except (CircuitftError, OSError) as err:  # e.g. a run whose first analysis is being written
                errors.append(f"run {name}: {err}")
        return _respond(
            request, json.dumps({"runs": runs, "errors": errors}, allow_nan=False), "application/json"
        )

    @wrappers.Request.application
    def _serve_graph(self, request: wrappers.Request) -> wrappers.Response:
        from circuitft.explorer.pack import pack_graph

        name, task, step = (request.args.get(k) for k in ("run", "task", "step"))
        folder = find_circuit_runs(self._logdir).get(name or "")
        if folder is None or not task or not (step or "").isdigit():
            return _respond(
                request,
                json.dumps({"error": f"no run {name!r}, or no task and step"}),
                "application/json",
                400,
            )
        try:
            run, _ = self._run(name, folder)
            packed = pack_graph(run.graph(int(step), task))
        except (CircuitftError, OSError) as err:
            return _respond(request, json.dumps({"error": str(err)}), "application/json", 404)
        return _respond(request, json.dumps(packed, allow_nan=False), "application/json")


def _respond(request: wrappers.Request, body: str, mime: str, code: int = 200) -> wrappers.Response:
    return http_util.Respond(request, body, mime, code=code)


__all__ = ["PLUGIN_NAME", "CircuitsPlugin", "find_circuit_runs", "log_roots"]
