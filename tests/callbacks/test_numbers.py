"""CircuitCallback's numbers per analysis, task-end circuits, failure isolation and TensorBoard extras."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from test_circuit import _fit

from circuitft.callbacks import RecordLog
from circuitft.eap.curve import SIZES
from circuitft.eap.io import read_safetensors
from circuitft.eap.overlap import top_k_jaccard
from circuitft.errors import ConfigError


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    # Tasks of 4 steps, circuits every 3: the task ends (4, 8) are analysed although 3 divides neither.
    trainer, _ = _fit(tmp_path_factory.mktemp("numbers"), every_n_steps=3, ckpt_every=3)
    return Path(trainer.log_dir)


def _records(run: Path) -> dict[tuple[int, str], dict]:
    rows = RecordLog(run / "circuits" / "metrics.jsonl").read()
    assert not [r for r in rows if r.get("error")], "no analysis failed"
    return {(r["step"], r["task"]): r for r in rows}


def test_task_ends_are_analysed_whatever_the_interval(run):
    recs = _records(run)
    assert sorted({s for s, _ in recs}) == [0, 3, 4, 6, 8]
    assert (4, "AddSub") in recs and (8, "AddSubInv") in recs  # each task's circuit at its own end


def test_size_curve_from_the_same_scores(run):
    for r in _records(run).values():
        curve = r["size_curve"]
        assert list(curve) == [repr(f) for f in SIZES]
        edges = [p["n_edges"] for p in curve.values()]
        assert edges == sorted(edges) and edges[-1] == 110  # 100%: every edge of tiny-gpt2
        assert curve["1.0"]["faithfulness"] == pytest.approx(1.0, abs=1e-4)
        # the main circuit (20%) is one point of the curve, evaluated on the same runs
        assert curve["0.2"]["faithfulness"] == pytest.approx(r["metrics"]["faithfulness"], abs=1e-9)


def test_cross_task_faithfulness_relative_to_the_tasks_own_circuit(run):
    recs = _records(run)
    assert recs[(4, "AddSub")]["cross_task_faithfulness"] == {}  # one task seen: nothing to cross
    for step in (6, 8):
        for a, b in (("AddSub", "AddSubInv"), ("AddSubInv", "AddSub")):
            cross = recs[(step, a)]["cross_task_faithfulness"][b]
            own = recs[(step, b)]["metrics"]["faithfulness"]
            assert cross["relative"] == pytest.approx(cross["faithfulness"] / own, rel=1e-9)


def test_overlap_against_anchors(run):
    recs = _records(run)
    root = run / "circuits"
    graph = lambda step, task: read_safetensors(root / f"step{step:06d}" / f"{task}.safetensors")  # noqa: E731
    o = recs[(8, "AddSub")]["overlap"]
    assert o["top_jaccard_previous"] == pytest.approx(top_k_jaccard(graph(6, "AddSub"), graph(8, "AddSub")))
    assert o["top_jaccard_first"] == pytest.approx(top_k_jaccard(graph(0, "AddSub"), graph(8, "AddSub")))
    assert o["top_jaccard_task_end"] == pytest.approx(top_k_jaccard(graph(4, "AddSub"), graph(8, "AddSub")))
    assert "top_jaccard_task_end" not in recs[(4, "AddSub")]["overlap"]  # its own end: no anchor yet
    assert recs[(0, "AddSub")]["overlap"] == {}


def test_overlaps_carry_chance_levels(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from circuitft.eap.chance import expected_jaccard

    recs = _records(run)
    o = recs[(8, "AddSub")]["overlap"]
    g = read_safetensors(run / "circuits" / "step000008" / "AddSub.safetensors")
    k = int(0.05 * g.n_edges)
    chance = expected_jaccard(k, k, g.n_edges)
    assert o["top_jaccard_chance"] == pytest.approx(chance)
    for ref in ("previous", "first", "task_end"):
        want = (o[f"top_jaccard_{ref}"] - chance) / (1 - chance)
        assert o[f"top_jaccard_{ref}_corrected"] == pytest.approx(want)
    assert o["edge_change_chance"] == pytest.approx(1 - k / g.n_edges)
    assert o["edge_change_corrected"] == pytest.approx(o["edge_change"] / o["edge_change_chance"])
    for name in ("node_change", "edge_jaccard", "node_jaccard"):
        assert math.isfinite(o[f"{name}_chance"]) and f"{name}_corrected" in o
    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    cross = [t for t in tags if t.startswith("circuit_overlap/")]
    for tail in ("", "_chance", "_corrected"):
        assert any(t.endswith(f"/top_k_jaccard{tail}") for t in cross)
        assert any(t.endswith(f"/node_jaccard_matched{tail}") for t in cross)


def test_forgetting_of_finished_tasks(run):
    recs = _records(run)
    for name in ("forgetting", "forgetting_rel", "forgetting_abs"):
        assert name not in recs[(4, "AddSub")]["metrics"]
        assert name not in recs[(8, "AddSubInv")]["metrics"]
    m_end = recs[(4, "AddSub")]["metrics"]
    key = "model_accuracy_heldout" if "model_accuracy_heldout" in m_end else "model_accuracy"
    at_end = m_end[key]
    for step in (6, 8):
        m = recs[(step, "AddSub")]["metrics"]
        now = m[key]
        got = m["forgetting_rel"]
        assert (math.isnan(got) and at_end == 0) or got == pytest.approx((at_end - now) / at_end)
        assert m["forgetting_abs"] == pytest.approx(at_end - now)
        assert "forgetting" not in m  # one name per definition: _abs and _rel


def test_tensorboard_text_images_hparams_layout(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("circuit/seconds")] == [0, 3, 4, 6, 8]
    assert all(e.value > 0 for e in acc.Scalars("circuit/seconds"))
    assert "circuit/AddSub/size_curve/5pct" in tags["scalars"]
    assert "circuit_cross/AddSub_on_AddSubInv/relative_faithfulness" in tags["scalars"]
    for t in ("final/average_accuracy", "final/backward_transfer", "final/AddSub/faithfulness"):
        assert t in tags["scalars"], t
    images = set(tags["images"])
    assert {"circuit/cross_task_jaccard", "accuracy_matrix", "circuit/AddSub/diagram"} <= images
    assert [e.step for e in acc.Images("accuracy_matrix")] == [4, 8]  # at each task end
    png = acc.Images("circuit/AddSub/diagram")[0].encoded_image_string
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = acc.Tensors("circuit/AddSub/top_edges/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.count("\n| ") == 20 and "->" in text
    summary = acc.Tensors("run/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "backward transfer" in summary and "% of the wall time" in summary
    assert "custom_scalars__config__" in tags["tensors"]
    hp = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hp)
    assert (
        b"lora_r" in hp["_hparams_/session_start_info"]
        and b"final/average_accuracy" in hp["_hparams_/experiment"]
    )


def test_a_failed_analysis_is_recorded_and_training_goes_on(tmp_path, monkeypatch, caplog):
    import circuitft.eap.pipeline as engine  # the pipeline runs attribution

    real = engine.attribute

    def failing(model, graph, pairs, **kw):
        if pairs.task == "AddSubInv":
            raise RuntimeError("injected failure\nsecond line")
        return real(model, graph, pairs, **kw)

    monkeypatch.setattr(engine, "attribute", failing)
    with caplog.at_level(logging.ERROR, logger="circuitft"):
        trainer, _ = _fit(tmp_path / "record", every_n_steps=4, at_start=False, sizes=False)
    assert trainer.global_step == 8  # the run finished
    rows = RecordLog(Path(trainer.log_dir) / "circuits" / "metrics.jsonl").read()
    assert [(r["step"], r["task"], bool(r["error"])) for r in rows] == [
        (4, "AddSub", False),
        (8, "AddSubInv", True),
    ]
    assert rows[1]["error"] == "RuntimeError: injected failure"
    assert "failed (AddSubInv): RuntimeError: injected failure" in caplog.text
    with pytest.raises(RuntimeError, match="step 8 failed: AddSubInv: RuntimeError: injected failure"):
        _fit(tmp_path / "raise", every_n_steps=4, at_start=False, sizes=False, on_error="raise")


def test_cross_task_for_tasks_not_in_the_stream(tmp_path):
    with pytest.raises(ConfigError, match=r"cross_task \['Nope'\] are not in the stream"):
        _fit(tmp_path, cross_task=["AddSub", "Nope"])


def test_diagrams_of_a_model_too_large_are_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    import circuitft.callbacks.board as circuit  # the TensorBoard output holds the limit

    monkeypatch.setattr(circuit, "MAX_DIAGRAM_EDGES", 100)  # tiny-gpt2 has 110 edges
    with caplog.at_level(logging.WARNING, logger="circuitft"):
        trainer, _ = _fit(tmp_path, every_n_steps=4, at_start=False, sizes=False, cross_task=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = EventAccumulator(str(trainer.log_dir), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert not [t for t in images if t.endswith("/diagram")] and "accuracy_matrix" in images
    assert caplog.text.count("circuit diagrams are skipped") == 1
