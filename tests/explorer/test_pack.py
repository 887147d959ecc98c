"""Packing a run for the explorer: scores equal the graph files', the layout is the static diagram's, the
report writes explorer.html (one per run when it holds several) with its data embedded and links it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from analysis.synth import CFG, write_run
from circuitft.analysis.runs import read_run
from circuitft.cli import main as cli_main
from circuitft.eap.graph import GraphConfig
from circuitft.errors import DataError
from circuitft.explorer.pack import layout, pack_graph, pack_run, shipped_count, unpack_graph
from circuitft.explorer.page import explorer_file_name, explorer_html
from circuitft.plots.diagram import node_positions

TASKS = [("A", 10), ("B", 10)]
ANALYSES = {0: {"A": (0.1, 0.1), "B": (0.2, 0.15)}, 10: {"A": (0.9, 0.8), "B": (0.3, 0.2)}}


def _embedded(page: str) -> dict:
    m = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


def _file_top(path: Path, k: int) -> tuple[list[str], np.ndarray]:
    """The k strongest edges of a graph file, read with safetensors alone (stable sort on -|score|)."""
    scores = load_file(str(path))["edge_scores"]
    order = np.argsort(-np.abs(scores), kind="stable")[:k]
    return [CFG.edge_names[i] for i in order], scores[order]


def test_shipped_count():
    assert shipped_count(200) == 200  # small models: every edge
    assert shipped_count(70651) == 7066  # SmolLM2: the top 10%
    assert shipped_count(70651, frac=0.05, floor=10) == 3533


def test_packed_scores_are_the_files(tmp_path):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    path = tmp_path / "run" / "circuits" / "step000010" / "A.safetensors"
    run = read_run(tmp_path / "run")
    packed = pack_graph(run.graph(10, "A"), floor=7)
    assert packed["count"] == shipped_count(CFG.n_edges, floor=7) == int(np.ceil(0.1 * CFG.n_edges))
    arrays = unpack_graph(packed)
    names = [
        f"{CFG.forward_names[s]}->{CFG.backward_names[d]}"
        for s, d in zip(arrays["src"], arrays["dst"], strict=True)
    ]
    want_names, want_scores = _file_top(path, packed["count"])
    assert names == want_names
    np.testing.assert_array_equal(arrays["score"], want_scores)  # bit for bit: float32 both ways
    in_graph = load_file(str(path))["edge_in_graph"]
    lookup = {n: i for i, n in enumerate(CFG.edge_names)}
    assert arrays["in_circuit"].tolist() == [int(in_graph[lookup[n]]) for n in names]
    assert packed["n_edges"] == CFG.n_edges and packed["n_circuit"] == int(in_graph.sum())


def test_layout_is_the_diagrams():
    cfg = GraphConfig(n_layers=2, n_heads=4, n_kv_heads=2)
    lay = layout(cfg)
    np.testing.assert_allclose(np.c_[lay["nodes"]["x"], lay["nodes"]["y"]], node_positions(cfg))
    assert lay["nodes"]["name"][:3] == ["input", "a0.h0", "a0.h1"]
    assert (
        lay["nodes"]["kind"][5] == "mlp" and lay["nodes"]["layer"][5] == 0 and lay["nodes"]["head"][5] is None
    )
    assert lay["nodes"]["layer"][-1] == 2 and lay["nodes"]["kind"][-1] == "logits"
    # grouped k/v inputs belong to their group's first head, as in the static diagram
    k1 = cfg.backward_lookup["a1.g1<k>"]
    assert lay["dst"]["kind"][k1] == "k" and lay["nodes"]["name"][lay["dst"]["node"][k1]] == "a1.h2"


def test_run_index_and_page(tmp_path):
    write_run(tmp_path / "run", TASKS, ANALYSES)
    run = read_run(tmp_path / "run")
    data = pack_run(run)
    assert data["tasks"] == ["A", "B"] and data["steps"] == {"A": [0, 10], "B": [0, 10]}
    assert data["task_ends"] == {"A": 10, "B": 20}
    assert data["curves"]["A"]["model_accuracy"] == [0.1, 0.9]
    assert data["curves"]["B"]["circuit_accuracy"] == [0.15, 0.2]
    assert set(data["graphs"]["B"]) == {"0", "10"}
    page = explorer_html([data])
    assert _embedded(page)["runs"][0]["graphs"]["A"]["10"]["score"] == data["graphs"]["A"]["10"]["score"]
    assert not re.search(r'(src|href)="(https?:)?//', page)  # offline: nothing fetched
    assert "CircuitExplorer.mount" in page


def test_script_json_cannot_close_the_script(tmp_path):
    write_run(tmp_path / "run", [("A</script><b>", 10)], {0: {"A</script><b>": (0.1, 0.1)}})
    page = explorer_html([pack_run(read_run(tmp_path / "run"))])
    assert page.count("</script>") == 3 and _embedded(page)["runs"][0]["tasks"] == ["A</script><b>"]


def test_report_writes_and_links_explorers(tmp_path, capsys):
    write_run(tmp_path / "one" / "run", TASKS, ANALYSES)
    assert cli_main(["report", str(tmp_path / "one" / "run"), "--out", str(tmp_path / "rep1")]) == 0
    index = (tmp_path / "rep1" / "index.html").read_text()
    assert 'href="explorer.html"' in index and (tmp_path / "rep1" / "explorer.html").is_file()
    write_run(tmp_path / "two" / "x", TASKS, ANALYSES, seed=1)
    write_run(tmp_path / "two" / "y y", TASKS, ANALYSES, seed=2)
    assert cli_main(["report", str(tmp_path / "two"), "--out", str(tmp_path / "rep2")]) == 0
    index = (tmp_path / "rep2" / "index.html").read_text()
    for name in ("x", "y y"):
        file = explorer_file_name(name, 2)
        assert f'href="{file}"' in index
        data = _embedded((tmp_path / "rep2" / file).read_text())
        assert [r["name"] for r in data["runs"]] == [name]
    assert explorer_file_name("y y", 2) == "explorer_y_y.html"
    capsys.readouterr()


def test_graph_too_big_for_uint16():
    with pytest.raises(DataError, match="too big"):
        layout(GraphConfig(n_layers=400, n_heads=200))
