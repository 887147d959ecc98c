"""The explorer as one self-contained HTML file (data, script and style inline; opens from disk, offline),
and as the ES module TensorBoard's Circuits tab loads (:mod:`circuitft.explorer.board`).

Both wrap the same component, ``static/explorer.js`` + ``static/explorer.css`` (package data).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from circuitft.explorer.pack import pack_run
from circuitft.files import atomic_write_text
from circuitft.names import slug

REFRESH_S = 30  # how often TensorBoard's Circuits tab looks for newly analysed steps
PAGE_STYLE = "body { margin: 1em; } h1 { font: 600 18px sans-serif; margin: 0 0 0.3em; }"


def asset(name: str) -> str:
    """The text of a file under ``circuitft/explorer/static/``."""
    return resources.files("circuitft.explorer").joinpath("static", name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can end it early)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_html(runs: list[dict[str, Any]], title: str = "circuitft circuit explorer") -> str:
    """The page for packed runs (:func:`circuitft.explorer.pack.pack_run` results)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}\n{asset('explorer.css')}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1><div id="explorer"></div>\n'
        f'<script id="explorer-data" type="application/json">{_script_json({"runs": runs})}</script>\n'
        f"<script>\n{asset('explorer.js')}\n</script>\n"
        "<script>CircuitExplorer.mount(document.getElementById('explorer'), CircuitExplorer.embeddedSource("
        "JSON.parse(document.getElementById('explorer-data').textContent)));</script>\n</body></html>\n"
    )


def explorer_file_name(run_name: str, n_runs: int) -> str:
    """``explorer.html`` for a one-run report, ``explorer_<run>.html`` when it holds several runs."""
    if n_runs <= 1:
        return "explorer.html"
    return f"explorer_{slug(run_name)}.html"


def write_explorers(runs: list[Any], out: Path) -> list[tuple[str, str]]:
    """Write one explorer page per run (``runs``: :class:`~circuitft.analysis.runs.RunData`) into ``out``;
    returns ``(run name, file name)`` pairs in run order."""
    written = []
    for run in runs:
        name = explorer_file_name(run.name, len(runs))
        atomic_write_text(
            out / name, explorer_html([pack_run(run)], f"circuitft circuit explorer: {run.name}")
        )
        written.append((run.name, name))
    return written


def links_html(written: list[tuple[str, str]]) -> str:
    """The report's paragraph linking its explorer pages."""
    links = ", ".join(f'<a href="{html.escape(f)}">{html.escape(r)}</a>' for r, f in written)
    return (
        f'<p id="explorer-links">Interactive circuit explorer (every analysed step and task, compare two of '
        f"them, the edge table): {links}</p>"
    )


def board_module() -> str:
    """The ES module of TensorBoard's Circuits tab: the component and a source fetching the plugin's routes."""
    return (
        asset("explorer.js")
        + f"\nconst CSS = {json.dumps(asset('explorer.css'))};\nconst REFRESH_S = {REFRESH_S};\n"
        + """
async function getJSON(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(url + ": " + res.status + " " + (await res.text()));
  return res.json();
}

export async function render() {
  const style = document.createElement("style");
  style.textContent = CSS + "\\nbody { margin: 8px; }";
  document.head.appendChild(style);
  const root = document.createElement("div");
  root.id = "explorer";
  document.body.appendChild(root);
  let index;
  try {
    index = await getJSON("./runs");
  } catch (err) {
    root.textContent = "circuitft: cannot list the runs (" + err.message + ")";
    return;
  }
  for (const problem of index.errors || []) {
    const p = document.createElement("p");
    p.className = "cx-status";
    p.textContent = problem;
    document.body.appendChild(p);
  }
  const q = encodeURIComponent;
  const explorer = globalThis.CircuitExplorer.mount(root, {
    runs: index.runs,
    graph: (run, task, step) => getJSON(`./graph?run=${q(run)}&task=${q(task)}&step=${q(step)}`),
  });
  // a run that trains analyses more steps: look for them every REFRESH_S seconds
  globalThis.circuitsRefresh = async () => {
    try {
      const fresh = await getJSON("./runs");
      if (explorer && JSON.stringify(fresh.runs.map((r) => r.steps)) !== JSON.stringify(index.runs.map((r) => r.steps))) {
        index = fresh;
        explorer.updateRuns(fresh.runs);
      }
    } catch (err) {
      /* TensorBoard restarting: try again later */
    }
  };
  setInterval(globalThis.circuitsRefresh, REFRESH_S * 1000);
}
"""
    )


__all__ = ["asset", "board_module", "explorer_file_name", "explorer_html", "links_html", "write_explorers"]
