"""A stream with a mixed stage (``mix: [AddSub, AddSubInv]``, then Add): task ends, ``trained_task``,
forgetting, the accuracy matrix, BWT and the report's task ends; held-out scores, split-half Jaccard and MIB's
CPR/CMD in the records."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from circuitft.analysis.continual import accuracy_matrix, stage_columns, summaries
from circuitft.analysis.runs import read_run
from circuitft.callbacks import CircuitCallback, RecordLog
from circuitft.cli import main
from circuitft.data.schedule import from_config
from circuitft.eap.mib import MIB_FRACTIONS

PARAMS = {"lo": 0, "hi": 29}
TASKS = [
    {"mix": ["AddSub", "AddSubInv"], "steps": 4, "n_train": 16, "n_val": 6, "params": PARAMS},
    {"task": "Add", "steps": 4, "n_train": 16, "n_val": 6, "params": PARAMS},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CircuitCallback]:
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.training.module import LoRAModule

    root = tmp_path_factory.mktemp("mixed")
    L.seed_everything(0)
    module = LoRAModule(model="tiny-gpt2", lora_r=4, lr=1e-3)
    dm = TaskStreamDataModule(tasks=TASKS, batch_size=4, seed=0)
    cb = CircuitCallback(n_examples=6, batch_size=4, ig_steps=2, top_frac=0.2, split_half=True, echo=False)
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(root, name="", version=0, default_hp_metric=False),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2, save_top_k=-1), cb],
    )
    trainer.fit(module, datamodule=dm)
    folder = Path(trainer.log_dir)
    return folder, cb


def _records(folder: Path) -> dict[tuple[int, str], dict]:
    return {(r["step"], r["task"]): r for r in RecordLog(folder / "circuits" / "metrics.jsonl").results()}


def test_schedule_of_the_mixed_stream() -> None:
    plan = from_config({"data": {"tasks": TASKS}})
    assert plan.stages == ("AddSub+AddSubInv", "Add")
    assert plan.task_ends() == {"AddSub": 4, "AddSubInv": 4, "Add": 8}
    assert plan.trained_at(4) == ["AddSub", "AddSubInv"] and plan.trained_at(5) == ["Add"]
    assert plan.seen_at(2) == ["AddSub", "AddSubInv"] and plan.seen_at(0) == ["AddSub"]


def test_trained_task_names_the_whole_mixed_stage(run) -> None:
    recs = _records(run[0])
    assert sorted(recs) == sorted(
        [(0, "AddSub")]
        + [(s, t) for s in (2, 4) for t in ("AddSub", "AddSubInv")]
        + [(s, t) for s in (6, 8) for t in ("AddSub", "AddSubInv", "Add")]
    )
    for (step, _), r in recs.items():
        if 0 < step <= 4:
            assert r["trained_task"] == "AddSub+AddSubInv" and r["trained_tasks"] == ["AddSub", "AddSubInv"]
        elif step > 4:
            assert r["trained_task"] == "Add" and r["trained_tasks"] == ["Add"]


def test_forgetting_of_both_mixed_tasks_is_measured_from_their_stage_end(run) -> None:
    recs = _records(run[0])
    for task in ("AddSub", "AddSubInv"):
        end_m, now_m = recs[(4, task)]["metrics"], recs[(8, task)]["metrics"]
        key = (
            "model_accuracy_heldout"
            if math.isfinite(now_m.get("model_accuracy_heldout", math.nan))
            else "model_accuracy"
        )
        at_end, now = end_m[key], now_m[key]
        lost, rel = now_m.get("forgetting_abs"), now_m.get("forgetting_rel")
        assert lost is not None and rel is not None, task
        assert lost == pytest.approx(at_end - now)
        if at_end:
            assert rel == pytest.approx((at_end - now) / at_end)
        else:
            assert math.isnan(rel)
        assert "forgetting_abs" not in end_m and "forgetting_rel" not in end_m
    assert "forgetting_abs" not in recs[(8, "Add")]["metrics"]


def test_final_numbers_and_backward_transfer(run) -> None:
    folder, cb = run
    recs = _records(folder)
    acc = {k: r["metrics"]["model_accuracy"] for k, r in recs.items()}
    drops = [acc[(8, t)] - acc[(4, t)] for t in ("AddSub", "AddSubInv")]
    assert cb.final["final/backward_transfer"] == pytest.approx(sum(drops) / 2)
    assert cb.final["final/Add/accuracy"] == pytest.approx(acc[(8, "Add")])


def test_report_reads_the_mixed_stage(run, tmp_path: Path) -> None:
    folder, _ = run
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"tasks": TASKS}}))
    try:
        with_config = read_run(folder)
    finally:
        (folder / "config.yaml").unlink()
    without = read_run(folder)  # from the records' trained_tasks
    recs = _records(folder)
    acc = {k: r["metrics"]["model_accuracy"] for k, r in recs.items()}
    for rd in (with_config, without):
        assert rd.tasks == ["AddSub", "AddSubInv", "Add"]
        assert rd.task_ends == {"AddSub": 4, "AddSubInv": 4, "Add": 8}
        r, _ = accuracy_matrix(rd)
        assert list(r.index) == ["AddSub+AddSubInv", "Add"]
        assert r.loc["AddSub+AddSubInv", "AddSubInv"] == pytest.approx(acc[(4, "AddSubInv")])
        assert math.isnan(r.loc["AddSub+AddSubInv", "Add"])
        s = summaries(r, None, stage_columns(rd))
        drops = [acc[(8, t)] - acc[(4, t)] for t in ("AddSub", "AddSubInv")]
        assert s["BWT"] == pytest.approx(sum(drops) / 2) and s["BWT_terms"] == 2
        assert s["ACC"] == pytest.approx(sum(acc[(8, t)] for t in rd.tasks) / 3)
    out = tmp_path / "report"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    for task, end in (("AddSub", 4), ("AddSubInv", 4), ("Add", 8)):
        assert f"{task} (ends at step {end})" in page
    import pandas as pd

    table = pd.read_csv(out / "tables" / "circuits.csv")
    assert (table["n_examples_heldout"] == 6).all() and (table["n_examples"] == 6).all()
    assert table["faithfulness_heldout"].notna().all() and table["cpr"].notna().all()
    ends = table[table["task_end"]].set_index("task")["step"].to_dict()
    assert ends == {"AddSub": 4, "AddSubInv": 4, "Add": 8}


def test_heldout_scores_are_in_every_record(run) -> None:
    for r in _records(run[0]).values():
        m = r["metrics"]
        assert r["n_examples"] == 6 and r["n_examples_heldout"] == 6 and m["n_examples_heldout"] == 6
        for key in ("faithfulness", "kl_recovered_pct", "circuit_accuracy", "model_accuracy"):
            assert math.isfinite(m[f"{key}_heldout"]), key
        assert m["metric_gap"] == pytest.approx(abs(m["clean_metric"] - m["corrupted_metric"]))


def test_heldout_rows_are_disjoint_from_the_discovery_rows(run) -> None:
    import pandas as pd

    folder = run[0]
    for task in ("AddSub", "AddSubInv", "Add"):
        data = folder.parent if not (folder / "data").is_dir() else folder
        val = pd.read_csv(data / "data" / task / "val.csv")["clean"].head(6)
        test = pd.read_csv(data / "data" / task / "test.csv")["clean"].head(6)
        assert len(test) == 6 and not set(val) & set(test)


def test_split_half_jaccard_at_stage_ends_only(run) -> None:
    for (step, task), r in _records(run[0]).items():
        if step in (4, 8):
            assert 0 <= r["metrics"]["split_half_jaccard"] <= 1, (step, task)
        else:
            assert "split_half_jaccard" not in r["metrics"]


def test_cpr_and_cmd_from_the_records_own_size_curve(run) -> None:
    for r in _records(run[0]).values():
        curve = {float(k): v["faithfulness"] for k, v in r["size_curve"].items()}
        ys = [curve[x] for x in MIB_FRACTIONS]
        xs = MIB_FRACTIONS
        cpr = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
        cmd = sum((xs[i + 1] - xs[i]) * (abs(1 - ys[i]) + abs(1 - ys[i + 1])) / 2 for i in range(len(xs) - 1))
        assert r["metrics"]["cpr"] == pytest.approx(cpr) and r["metrics"]["cmd"] == pytest.approx(cmd)


def test_new_numbers_reach_tensorboard(run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run[0])).Reload()
    tags = set(acc.Tags()["scalars"])
    for key in (
        "cpr",
        "cmd",
        "metric_gap",
        "faithfulness_heldout",
        "n_examples_heldout",
        "split_half_jaccard",
    ):
        assert f"circuit/AddSubInv/{key}" in tags, key
    assert [e.step for e in acc.Scalars("circuit/AddSubInv/split_half_jaccard")] == [4, 8]
