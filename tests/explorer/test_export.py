"""`circuitft export-graph`: GraphML and GEXF that networkx reads back with the file's edges and scores."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from safetensors.numpy import load_file

from analysis.synth import CFG, make_graph
from circuitft.cli import main as cli_main
from circuitft.eap.io import write_json, write_safetensors


def _expected(path: Path, top: int | None = None) -> dict[str, float]:
    """Edge name -> score of the circuit (or the top edges), from the safetensors file alone."""
    t = load_file(str(path))
    scores = t["edge_scores"]
    idx = (
        np.flatnonzero(t["edge_in_graph"])
        if top is None
        else np.argsort(-np.abs(scores), kind="stable")[:top]
    )
    return {CFG.edge_names[i]: float(scores[i]) for i in idx}


def _read_back(folder: Path) -> list[nx.MultiDiGraph]:
    return [nx.read_graphml(folder / "circuit.graphml"), nx.read_gexf(folder / "circuit.gexf")]


@pytest.mark.parametrize("top", [None, 25])
def test_round_trip(tmp_path, capsys, top):
    path = tmp_path / "g.safetensors"
    write_safetensors(make_graph(3), path)
    extra = [] if top is None else ["--top", str(top)]
    assert cli_main(["export-graph", str(path), "--out", str(tmp_path / "out"), *extra]) == 0
    assert "circuit.graphml" in capsys.readouterr().out
    want = _expected(path, top)
    for g in _read_back(tmp_path / "out"):
        assert g.is_directed() and g.is_multigraph()
        got = {d["name"]: (u, v, d) for u, v, d in g.edges(data=True)}
        assert set(got) == set(want)
        for name, (u, v, d) in got.items():
            assert float(d["score"]) == pytest.approx(want[name], rel=1e-6, abs=0)
            src, dst = name.split("->")
            assert u == src
            kind = dst[-2] if dst.endswith(">") else ("logits" if dst == "logits" else "mlp")
            assert d["input"] == kind
            if kind in "qkv":
                layer, head = dst.split("<")[0][1:].split(".h")
                assert (
                    v == f"a{layer}.h{head}" and int(d["layer"]) == int(layer) and int(d["head"]) == int(head)
                )
            else:
                assert v == dst and int(d["head"]) == -1
        assert g.nodes["a1.h2"]["kind"] == "head" and int(g.nodes["a1.h2"]["layer"]) == 1
        assert int(g.nodes["a1.h2"]["head"]) == 2 and int(g.nodes["m2"]["head"]) == -1
        assert g.number_of_nodes() == CFG.n_forward + 1


def test_json_graph_and_bad_input(tmp_path, capsys):
    path = tmp_path / "g.json"
    write_json(make_graph(4), path)
    assert cli_main(["export-graph", str(path), "--out", str(tmp_path / "out")]) == 0
    (g, _) = _read_back(tmp_path / "out")
    assert g.number_of_edges() == make_graph(4).count_edges()
    capsys.readouterr()
    assert (
        cli_main(["export-graph", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o2")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.safetensors" in err and not (tmp_path / "o2").exists()
    assert cli_main(["export-graph", str(path), "--out", str(tmp_path / "o3"), "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err and not (tmp_path / "o3").exists()
