"""The layers hold: an import may only go down (or sideways inside one package), never back up a layer.

The table below is the architecture of docs/layers.md. Every import counts, those inside functions too
(:func:`tests.test_imports.import_graph`), so the graph a tool draws is the real one.
"""

from __future__ import annotations

import ast

import pytest

from test_imports import PACKAGE_ROOT, import_graph

# rank: a module may import modules of its own rank's package or of a lower rank
LAYERS: dict[str, int] = {
    # 0: foundations (no circuitft imports beyond each other)
    "errors": 0,
    "dtypes": 0,
    "names": 0,
    "diskfull": 0,
    "outputs": 0,
    "files": 0,
    "hub": 0,
    "quiet": 0,
    "runlock": 0,
    "limits": 0,
    "safeyaml": 0,
    "owned": 0,
    "argcheck": 0,
    "cache": 0,
    "runconfig": 0,
    "runfolder": 0,
    "circuitft": 0,  # the package's __init__: __version__ and lazy re-exports (importlib, no static import)
    # 1-3: data -> model -> engine
    "data": 1,
    "models": 2,
    "eap": 3,
    # 4-5: what uses the engine: adapters, training, report tables and figures
    "circuitlora": 4,
    "training": 5,
    "analysis": 4,
    "timing": 4,
    "sweeps": 4,  # a sweep file read into runs, their plan and time estimate, shared prefixes, the runner  # EAP-IG and LoRA training timed against their plain-transformers floors (bench)
    "plots": 5,
    # 6: Lightning callbacks; 7: entry points
    "callbacks": 6,
    "preflight": 6,
    "api": 7,
    "commands": 7,
    "explorer": 7,  # the circuit explorer page and TensorBoard plugin
    "report": 7,  # the report builder (reads runs, tables, figures, the page; embeds the explorer)
    "cli": 8,
    "__main__": 9,
}

# layers that stay importable without Lightning (a notebook, the API, another trainer)
NO_LIGHTNING = ("models", "eap", "analysis", "plots", "circuitlora", "timing", "sweeps")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """``"a imports b"`` for every import from a package into a package of a higher rank."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            src, dst = _package(module), _package(target)
            if src != dst and layers[dst] > layers[src]:
                bad.append(f"{module} (layer {layers[src]}) imports {target} (layer {layers[dst]})")
    return bad


def test_every_package_has_a_layer():
    graph = import_graph(PACKAGE_ROOT)
    missing = sorted({_package(m) for m in graph} - set(LAYERS))
    assert not missing, f"add these to LAYERS (and docs/layers.md): {missing}"


def test_no_import_runs_back_up_a_layer():
    bad = upward_imports(import_graph(PACKAGE_ROOT), LAYERS)
    assert not bad, "imports that run back up a layer:\n" + "\n".join(bad)


def test_the_layer_check_catches_an_upward_import():
    graph = {"circuitft.models.x": {"circuitft.training.y"}, "circuitft.training.y": {"circuitft.models.x"}}
    assert upward_imports(graph, LAYERS) == [
        "circuitft.models.x (layer 2) imports circuitft.training.y (layer 5)"
    ]


def _imports_lightning(path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        if any(n == "lightning" or n.startswith(("lightning.", "pytorch_lightning")) for n in names):
            return True
    return False


@pytest.mark.parametrize("package", NO_LIGHTNING)
def test_lower_layers_do_not_import_lightning(package):
    found = [p.name for p in sorted((PACKAGE_ROOT / package).rglob("*.py")) if _imports_lightning(p)]
    assert not found, f"{package}/ must stay usable without Lightning; these import it: {found}"
