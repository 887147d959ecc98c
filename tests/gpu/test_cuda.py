"""CUDA equals CPU: attribution, evaluation and the callback on the tiny models; a bf16-mixed fit.

Run by ``benchmarks/gpu_check.sh`` (``pytest -m gpu tests/gpu``); skipped without CUDA and never part of
the normal suite (``addopts`` excludes the ``gpu`` marker).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "eap"))
from digits import digit_rows  # noqa: E402

from circuitft.data.pairs import tokenize_pairs  # noqa: E402
from circuitft.eap.attribute import attribute  # noqa: E402
from circuitft.eap.evaluate import evaluate, faithfulness  # noqa: E402
from circuitft.eap.graph import Graph  # noqa: E402
from circuitft.eap.select import select  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
ARCHS = ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-qwen2"]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float((x * y).sum() / (x.norm() * y.norm()))


def assert_same_top(a: torch.Tensor, b: torch.Tensor, frac: float = 0.05) -> None:
    """Same top-``frac`` edge set by |score|; an edge may swap only with one tied to within the two
    devices' largest difference (a tie at the boundary is not a different circuit)."""
    a, b = a.abs().flatten(), b.abs().flatten()
    k = max(1, int(frac * a.numel()))
    top_a, top_b = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
    if top_a == top_b:
        return
    noise = float((a - b).abs().max())
    kth = float(a.topk(k).values[-1])
    for edge in top_a ^ top_b:
        assert abs(float(a[edge]) - kth) <= 2 * noise, (edge, float(a[edge]), kth, noise)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_attribute_on_cuda_equals_cpu(tiny, name, metric):
    loaded = tiny(name)
    pairs = tokenize_pairs(digit_rows(16, two_token_answers=True), loaded.tokenizer, "add")
    scores = {}
    for device in ("cpu", "cuda"):
        model = loaded.model.to(device)
        graph = attribute(
            model, Graph.from_model(model), pairs, metric=metric, ig_steps=5, batch_size=6, progress=False
        )
        scores[device] = graph.scores[graph.cfg.real_edge_mask].cpu()
    assert scores["cpu"].abs().max() > 0
    assert pearson(scores["cpu"], scores["cuda"]) >= 0.9999
    assert_same_top(scores["cpu"], scores["cuda"])


@pytest.mark.parametrize("name", ARCHS)
def test_evaluate_on_cuda_equals_cpu(tiny, name):
    loaded = tiny(name)
    pairs = tokenize_pairs(digit_rows(16), loaded.tokenizer, "add")
    graph = attribute(loaded.model, Graph.from_model(loaded.model), pairs, batch_size=8, progress=False)
    select(graph, top_frac=0.2)
    results = {}
    for device in ("cpu", "cuda"):
        model = loaded.model.to(device)
        results[device] = evaluate(model, graph, pairs, metric="logit_diff", batch_size=6, progress=False)
    cpu, cuda = results["cpu"], results["cuda"]
    for field in ("clean", "corrupted", "circuit", "kl_corr_circ"):
        torch.testing.assert_close(getattr(cuda, field), getattr(cpu, field), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(cpu.circuit, cpu.clean, atol=1e-3)  # the patch does something
    f_cpu, f_cuda = faithfulness(cpu), faithfulness(cuda)
    assert f_cuda["faithfulness"] == pytest.approx(f_cpu["faithfulness"], abs=1e-4)


def _fit(root: Path, accelerator: str, precision: str = "32-true", max_steps: int = 2):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from circuitft.callbacks import CircuitCallback
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.training.module import LoRAModule

    tasks = [{"task": "AddSub", "steps": 4, "n_train": 16, "n_val": 8, "params": {"lo": 0, "hi": 9}}]
    L.seed_everything(0)
    module = LoRAModule(model="tiny-llama", lora_r=4, lr=1e-3)
    dm = TaskStreamDataModule(tasks=tasks, batch_size=4, seed=0)
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=max_steps,
        logger=TensorBoardLogger(root, name="", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[
            ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2, save_last=True),
            CircuitCallback(n_examples=8, batch_size=4, ig_steps=3, top_frac=0.05, every_n_steps=2),
        ],
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def test_circuit_callback_on_cuda_equals_cpu(tmp_path: Path):
    """Step 0 (the untouched base model, identical on both devices): the same scores and circuit."""
    from circuitft.eap.io import read_safetensors

    graphs = {}
    for accelerator in ("cpu", "cuda"):
        _fit(tmp_path / accelerator, accelerator)
        path = tmp_path / accelerator / "version_0" / "circuits" / "step000000" / "AddSub.safetensors"
        if not path.is_file():
            path = next((tmp_path / accelerator).rglob("step000000/AddSub.safetensors"))
        graphs[accelerator] = read_safetensors(path)
    a, b = graphs["cpu"], graphs["cuda"]
    mask = a.cfg.real_edge_mask
    assert pearson(a.scores[mask], b.scores[mask]) >= 0.9999
    assert_same_top(a.scores[mask], b.scores[mask])


def test_two_step_fit_in_bf16_mixed(tmp_path: Path):
    trainer = _fit(tmp_path, "cuda", precision="bf16-mixed")
    assert trainer.global_step == 2
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert list(tmp_path.rglob("step000002/AddSub.safetensors"))
