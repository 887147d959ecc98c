"""Graph files: reference JSON (read a hand-written reference file), safetensors, errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.io import check_compatible, load_graph, read_json, save_graph, write_json
from circuitft.eap.select import select
from circuitft.errors import DataError

FIXTURE = Path(__file__).parent / "fixtures" / "reference_1layer.json"
META = {
    "method": "EAP-IG-inputs",
    "metric": "kl",
    "ig_steps": 5,
    "step_convention": "k=0..m-1",
    "kl_reduction": "sum",
    "seed": 3,
    "n_examples": 12,
}


def scored_graph(cfg: GraphConfig) -> Graph:
    g = Graph(cfg)
    g.scores[cfg.real_edge_mask] = torch.randn(cfg.n_edges, generator=torch.Generator().manual_seed(0))
    select(g, top_n=max(1, cfg.n_edges // 5))
    g.meta = dict(META)
    return g


def assert_same(a: Graph, b: Graph) -> None:
    assert a.cfg == b.cfg
    assert torch.equal(a.scores, b.scores)
    assert torch.equal(a.in_graph, b.in_graph)
    assert torch.equal(a.nodes_in_graph, b.nodes_in_graph)
    assert a.meta == b.meta


def test_reads_the_reference_library_json() -> None:
    g = read_json(FIXTURE)
    assert g.cfg == GraphConfig(1, 2, d_model=8)
    assert g.n_edges == 13
    assert set(g.edges_in_graph()) == {
        "input->a0.h0<q>",
        "input->a0.h0<v>",
        "a0.h0->m0",
        "a0.h0->logits",
        "m0->logits",
    }
    assert g.score_of("m0->logits").item() == 3.0
    assert g.score_of("input->a0.h0<k>").item() == -0.0625
    assert g.nodes_in_graph_names() == ["input", "a0.h0", "m0", "logits"]
    assert g.node_scores is None and g.meta == {}
    # the file's circuit is its top-5 by |score|, and re-selecting reproduces it
    again = g.copy()
    select(again, top_n=5)
    assert torch.equal(again.in_graph, g.in_graph)


def test_json_round_trip_has_reference_shape(tmp_path: Path) -> None:
    g = scored_graph(GraphConfig(2, 4, 2, d_model=32))
    g.node_scores = torch.full((g.cfg.n_forward + 1,), float("nan"))
    g.node_scores[3] = 0.5
    path = tmp_path / "sub" / "graph.json"
    write_json(g, path)
    d = json.loads(path.read_text())
    assert d["cfg"] == {
        "n_layers": 2,
        "n_heads": 4,
        "parallel_attn_mlp": False,
        "d_model": 32,
        "n_kv_heads": 2,
    }
    assert len(d["edges"]) == g.n_edges  # every edge, in or out of the circuit
    assert sum(e["in_graph"] for e in d["edges"].values()) == g.count_edges()
    assert set(d["nodes"]) == set(g.cfg.node_names) and d["nodes"]["logits"]["in_graph"] is True
    assert d["nodes"]["a0.h2"]["score"] == 0.5 and "score" not in d["nodes"]["a0.h0"]
    assert d["edges"]["input->a0.g1<v>"]["score"] == pytest.approx(g.score_of("input->a0.g1<v>").item())
    back = read_json(path)
    assert_same(g, back)
    assert back.node_scores[3] == 0.5 and torch.isnan(back.node_scores[0])
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary files left


def test_reference_json_without_kv_key_round_trips(tmp_path: Path) -> None:
    g = read_json(FIXTURE)
    write_json(g, tmp_path / "g.json")
    d = json.loads((tmp_path / "g.json").read_text())
    ref = json.loads(FIXTURE.read_text())
    assert d["cfg"] == ref["cfg"]
    assert d["edges"] == ref["edges"]  # same names, scores and flags
    assert {k: v["in_graph"] for k, v in d["nodes"].items()} == {
        k: v["in_graph"] for k, v in ref["nodes"].items()
    }


@pytest.mark.parametrize("cfg", [GraphConfig(2, 4, 2, d_model=32), GraphConfig(3, 2, parallel_attn_mlp=True)])
def test_safetensors_round_trip(tmp_path: Path, cfg: GraphConfig) -> None:
    g = scored_graph(cfg)
    path = tmp_path / "graph.safetensors"
    save_graph(g, path)
    assert_same(g, load_graph(path))
    assert_same(g, load_graph(path, cfg))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["meta"]) == META
        assert f.get_tensor("edge_scores").shape == (cfg.n_edges,)


def test_partial_edge_list_and_null_scores(tmp_path: Path) -> None:
    d = json.loads(FIXTURE.read_text())
    d["edges"] = {
        "m0->logits": {"score": None, "in_graph": True},
        "a0.h0->m0": {"score": 2, "in_graph": False},
    }
    (tmp_path / "p.json").write_text(json.dumps(d))
    g = read_json(tmp_path / "p.json")
    assert g.edges_in_graph() == ["m0->logits"]
    assert g.score_of("m0->logits").item() == 0.0 and g.score_of("a0.h0->m0").item() == 2.0


def write_broken(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(text)
    return path


def test_corrupt_json_names_file_and_position(tmp_path: Path) -> None:
    path = write_broken(tmp_path, '{"cfg": {"n_layers": 1,\n "n_heads": 2}, "nodes": {}, "edges": {,}}')
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON \(.* at line 2 column"):
        read_json(path)


@pytest.mark.parametrize("key", ["cfg", "nodes", "edges"])
def test_missing_top_level_key(tmp_path: Path, key: str) -> None:
    d = json.loads(FIXTURE.read_text())
    del d[key]
    with pytest.raises(DataError, match=f"missing top-level key '{key}'"):
        read_json(write_broken(tmp_path, json.dumps(d)))


def test_unknown_edge_and_node_and_bad_entries(tmp_path: Path) -> None:
    d = json.loads(FIXTURE.read_text())
    d["edges"]["a0.h1->a0.h0<q>"] = {"score": 1.0, "in_graph": False}
    with pytest.raises(DataError, match=r"broken\.json: unknown edge 'a0.h1->a0.h0<q>'"):
        read_json(write_broken(tmp_path, json.dumps(d)))
    d = json.loads(FIXTURE.read_text())
    d["nodes"]["a5.h0"] = {"in_graph": True}
    with pytest.raises(DataError, match="unknown node 'a5.h0'"):
        read_json(write_broken(tmp_path, json.dumps(d)))
    d = json.loads(FIXTURE.read_text())
    d["edges"]["m0->logits"] = {"score": "high", "in_graph": True}
    with pytest.raises(DataError, match="edge 'm0->logits': score must be a number"):
        read_json(write_broken(tmp_path, json.dumps(d)))
    d = json.loads(FIXTURE.read_text())
    d["cfg"] = {"n_heads": 2}
    with pytest.raises(DataError, match="'cfg' lacks 'n_layers'"):
        read_json(write_broken(tmp_path, json.dumps(d)))


def test_graph_for_another_model_names_the_first_bad_edge(tmp_path: Path) -> None:
    two_layers = GraphConfig(2, 2, d_model=8)
    with pytest.raises(DataError, match="the model's edge 'input->a1.h0<q>' is missing from the graph"):
        read_json(FIXTURE, cfg=two_layers)
    g = scored_graph(two_layers)
    write_json(g, tmp_path / "two.json")
    save_graph(g, tmp_path / "two.safetensors")
    one_layer = GraphConfig(1, 2, d_model=8)
    for name in ("two.json", "two.safetensors"):
        with pytest.raises(DataError, match=f"{name}: edge 'input->a1.h0<q>' is not in the model's graph"):
            load_graph(tmp_path / name, cfg=one_layer)
    with pytest.raises(DataError, match="edge 'input->a0.h0<k>' is not in the model's graph"):
        read_json(FIXTURE, cfg=GraphConfig(1, 2, 1, d_model=8))  # a GQA model: k/v per group
    with pytest.raises(DataError, match="d_model 8 vs 16"):
        check_compatible(read_json(FIXTURE), GraphConfig(1, 2, d_model=16))
    check_compatible(read_json(FIXTURE), GraphConfig(1, 2, d_model=8))
    assert read_json(FIXTURE, cfg=GraphConfig(1, 2, d_model=8)).count_edges() == 5


def test_safetensors_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(DataError, match=r"bad\.safetensors: not a readable safetensors file"):
        load_graph(bad)
    with pytest.raises(DataError, match="graph file not found"):
        load_graph(tmp_path / "missing.safetensors")
    with pytest.raises(DataError, match="unknown graph file suffix"):
        load_graph(tmp_path / "graph.pt")


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = scored_graph(GraphConfig(1, 2))
    path = tmp_path / "graph.json"
    write_json(g, path)
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("circuitft.eap.io.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_json(g, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]
