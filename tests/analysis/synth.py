"""Synthetic run folders (circuitft and prior layouts) with known numbers, for the analysis and report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.io import write_json, write_safetensors

CFG = GraphConfig(n_layers=3, n_heads=4, d_model=8)
CIRCUIT_FRAC = 0.1


def make_graph(seed: int, cfg: GraphConfig = CFG) -> Graph:
    """Random scores; the circuit is the top 10% of edges by |score| and the nodes they touch."""
    g = Graph(cfg)
    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.normal(size=cfg.n_edges), dtype=torch.float32)
    g.scores[cfg.real_edge_mask] = scores
    k = int(CIRCUIT_FRAC * cfg.n_edges)
    order = np.argsort(-np.abs(scores.numpy()), kind="stable")[:k]
    flat = torch.zeros(cfg.n_edges, dtype=torch.bool)
    flat[torch.as_tensor(order)] = True
    g.in_graph[cfg.real_edge_mask] = flat
    src, dst = g.in_graph.nonzero(as_tuple=True)
    g.nodes_in_graph[:] = False
    g.nodes_in_graph[src] = True
    g.nodes_in_graph[cfg.destination_node[dst]] = True
    g.nodes_in_graph[-1] = True
    return g


def top_names(g: Graph, frac: float = 0.05) -> set[str]:
    """Independent top-k edge-name set (k = int(frac * n_edges)), from the edge list in canonical order."""
    scores = g.scores[g.cfg.real_edge_mask].numpy()
    k = int(frac * g.cfg.n_edges)
    order = np.argsort(-np.abs(scores), kind="stable")[:k]
    return {g.cfg.edge_names[i] for i in order}


def node_names(g: Graph) -> set[str]:
    """Circuit node names without logits."""
    return {
        n for n, on in zip(g.cfg.node_names, g.nodes_in_graph.tolist(), strict=True) if on and n != "logits"
    }


def write_run(
    folder: Path,
    tasks: list[tuple[str, int]],
    analyses: dict[int, dict[str, tuple[float, float]]],
    *,
    model: str = "tiny-gpt2",
    cfg: GraphConfig = CFG,
    seed: int = 0,
    val_loss: dict[tuple[int, str], float] | None = None,
    size_curve: dict[tuple[int, str], dict[float, float]] | None = None,
    lightning_steps: bool = False,
    extra_metrics: dict[tuple[int, str], dict[str, float]] | None = None,
) -> dict[tuple[int, str], Graph]:
    """A circuitft run folder: config.yaml, circuits/metrics.jsonl, graph files, TensorBoard val losses.

    ``analyses``: step -> task -> (model accuracy, circuit accuracy); ``val_loss``: (optimizer step, task)
    -> loss, logged at TensorBoard step s as circuitft does (``lightning_steps``: at s - 1 with an ``epoch``
    scalar, as Lightning's own logging in older runs); ``extra_metrics``: (step, task) -> more metrics of that
    record (held-out scores, metric_gap, ...). Returns the graphs written.
    """
    folder.mkdir(parents=True)
    config = {"model": {"model": model}, "data": {"tasks": [{"task": t, "steps": s} for t, s in tasks]}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    ends, total = [], 0
    for _, s in tasks:
        total += s
        ends.append(total)
    graphs, lines = {}, []
    for n, (step, per_task) in enumerate(sorted(analyses.items())):
        trained = next((t for (t, _), e in zip(tasks, ends, strict=True) if step <= e), tasks[-1][0])
        for m, (task, (model_acc, circuit_acc)) in enumerate(sorted(per_task.items())):
            g = make_graph(seed * 1000 + n * 10 + m, cfg)
            rel = f"step{step:06d}/{task}.safetensors"
            write_safetensors(g, folder / "circuits" / rel)
            graphs[(step, task)] = g
            rec = {
                "step": step,
                "task": task,
                "trained_task": trained,
                "method": "EAP-IG-inputs",
                "metric": "kl",
                "ig_steps": 5,
                "n_examples": 8,
                "graph_path": rel,
                "overlap": {},
                "seconds": 0.1,
                "metrics": {
                    "model_accuracy": model_acc,
                    "circuit_accuracy": circuit_acc,
                    "faithfulness": 0.5 + 0.01 * step,
                    "kl_recovered_pct": 90.0 + step,
                    "n_edges": float(g.count_edges()),
                    "n_nodes": float(g.count_nodes()),
                    **((extra_metrics or {}).get((step, task), {})),
                },
            }
            if size_curve and (step, task) in size_curve:
                rec["size_curve"] = {
                    repr(f): {"faithfulness": v} for f, v in size_curve[(step, task)].items()
                }
            lines.append(json.dumps(rec))
    (folder / "circuits" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if val_loss:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(folder))
        for (step, task), loss in sorted(val_loss.items()):
            at = step - 1 if lightning_steps else step  # Lightning's own logging (older runs): step - 1
            writer.add_scalar(f"val/{task}/loss", loss, at)
            writer.add_scalar(f"val/{task}/acc", 0.5, at)
            if lightning_steps:
                writer.add_scalar("epoch", 0.0, at)
        writer.close()
    return graphs


def write_prior_run(folder: Path, checkpoints: dict[int, tuple[float, float, float]], seed: int = 0) -> dict:
    """The prior work's layout for one task: checkpoint-<N>/graph.json + metrics.json."""
    graphs = {}
    for n, (step, (model_acc, graph_acc, pct)) in enumerate(sorted(checkpoints.items())):
        ck = folder / f"checkpoint-{step}"
        g = make_graph(seed * 100 + n)
        write_json(g, ck / "graph.json")
        (ck / "metrics.json").write_text(
            json.dumps(
                {
                    "model_accuracy": model_acc,
                    "graph_accuracy": graph_acc,
                    "percentage_performance_kl": pct,
                    "faithfulness_kl": 1e-5,
                }
            )
        )
        graphs[step] = g
    return graphs


def write_curve(
    folder: Path,
    accuracy: dict[tuple[int, str], float],
    n_rows: int = 20,
    splits: tuple[str, ...] = ("val", "test"),
) -> Path:
    """The run's ``circuits/accuracy.jsonl`` as ForgettingCurve writes it: (step, task) -> accuracy."""
    path = folder / "circuits" / "accuracy.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "step": step,
                "task": task,
                "trained_task": "",
                "accuracy": acc,
                "n_correct": round(acc * n_rows),
                "n_rows": n_rows,
                "splits": list(splits),
            }
        )
        for (step, task), acc in sorted(accuracy.items())
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
