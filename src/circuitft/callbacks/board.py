"""What the circuit callback adds to TensorBoard besides scalars: layout, text, hyper-parameters, images.

Written through the ``SummaryWriter`` of the run's TensorBoardLogger (``logger.experiment``), on rank 0 only.

- custom scalars (``add_custom_scalars``): one chart with every task's validation accuracy, one with every
  task's faithfulness, one with every task's edge change, one with every cross-task top-5% Jaccard beside
  its chance level;
- text: ``circuit/<task>/top_edges`` (the 20 strongest edges and their scores) at each analysis, and
  ``run/summary`` (one paragraph) at the end;
- HPARAMS: the run's hyper-parameters with its final metrics, so the runs of a sweep line up in one table;
- images: figures made by :mod:`circuitft.plots`.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard.summary import hparams as hparams_summary

from circuitft import plots as figures_module
from circuitft.callbacks.history import accuracy_matrix
from circuitft.eap.graph import Graph
from circuitft.eap.overlap import top_k_edges

TOP_EDGES = 20
MAX_DIAGRAM_EDGES = 50_000  # larger models get no circuit diagrams (one warning)
log = logging.getLogger("circuitft")
# Cross-task overlap scalars (``circuit_overlap/<a>~<b>/<name>``): each overlap beside its chance level (random
# sets of the same sizes from the same graph) and chance-corrected value (eap.chance), and node overlap at
# matched density.
OVERLAP_SCALARS = tuple(
    f"{k}{tail}"
    for k in ("edge_jaccard", "node_jaccard", "top_k_jaccard", "node_jaccard_matched")
    for tail in ("", "_chance", "_corrected")
)
LAYOUT = {
    "circuitft": {
        "accuracy (every task)": ["Multiline", [r"^val/[^/]+/acc$"]],
        "faithfulness (every task)": ["Multiline", [r"^circuit/[^/]+/faithfulness$"]],
        "edge change (every task)": ["Multiline", [r"^circuit/[^/]+/edge_change$"]],
        "cross-task top-5% Jaccard and chance": [
            "Multiline",
            [r"^circuit_overlap/[^/]+/top_k_jaccard(_chance)?$"],
        ],
    }
}


def writers(trainer: Any) -> list[Any]:
    """The SummaryWriters of the trainer's TensorBoard loggers (none on ranks other than 0)."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def add_layout(writer: Any) -> None:
    """The three multi-task charts of the CUSTOM SCALARS tab."""
    writer.add_custom_scalars(LAYOUT)


def top_edges_markdown(graph: Graph, n: int = TOP_EDGES) -> str:
    """A markdown table of the ``n`` edges with the largest |score| (in the circuit or not)."""
    mask = top_k_edges(graph, min(n, graph.n_edges))
    src, dst = mask.nonzero(as_tuple=True)
    scores = graph.scores[src, dst].tolist()
    order = sorted(range(len(scores)), key=lambda i: -abs(scores[i]))
    lines = ["| # | edge | score | in circuit |", "|---|---|---|---|"]
    for rank, i in enumerate(order, 1):
        u, v = int(src[i]), int(dst[i])
        inside = "yes" if bool(graph.in_graph[u, v]) else "no"
        lines.append(f"| {rank} | `{graph.cfg.edge_name(u, v)}` | {scores[i]:.4g} | {inside} |")
    return "\n".join(lines)


def add_hparams(writer: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write the HPARAMS entry of this run: ``hparams`` (flattened to numbers and strings) and the names of
    ``metrics`` (whose values must also be logged as scalars under those tags)."""
    clean = {k: _plain(v) for k, v in hparams.items()}
    shown = {k: (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}  # the proto needs numbers
    exp, ssi, sei = hparams_summary(clean, shown)
    fw = writer.file_writer if hasattr(writer, "file_writer") else writer._get_file_writer()
    for summary in (exp, ssi, sei):
        fw.add_summary(summary)


def _plain(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def add_png(writer: Any, tag: str, png: bytes, step: int) -> None:
    """Log PNG bytes (e.g. :func:`circuitft.plots.figure_to_png`) as an image, without re-encoding."""

    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    fw = writer.file_writer if hasattr(writer, "file_writer") else writer._get_file_writer()
    fw.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def overlap_figures(graphs: dict[str, Graph], jaccard: dict[tuple[str, str], float], step: int) -> list:
    """The cross-task top-5% edge-Jaccard heatmap (with two tasks or more)."""
    import pandas as pd  # here only: `circuitft fit --help` imports this module, not pandas or the plots

    from circuitft import plots  # (pandas, matplotlib): only when a figure is drawn

    names = list(graphs)
    if len(names) < 2:
        return []
    matrix = pd.DataFrame(
        [[1.0 if a == b else jaccard.get((a, b), math.nan) for b in names] for a in names],
        index=names,
        columns=names,
    )
    title = f"top-5% edge Jaccard between tasks, step {step} (random sets: see circuit_overlap/*_chance)"
    return [("circuit/cross_task_jaccard", plots.overlap_heatmap(matrix, title=title))]


def accuracy_figures(
    rows: list[dict[str, Any]],
    names: list[str],
    ends: list[int],
    done: int,
    groups: list[list[str]] | None = None,
) -> list:
    """The accuracy matrix of the first ``done`` stage ends (untuned model on top when step 0 was analysed);
    ``groups``: the tasks of each stage (default one task per stage)."""
    import pandas as pd  # here only: `circuitft fit --help` imports this module, not pandas or the plots

    from circuitft import plots  # (pandas, matplotlib): only when a figure is drawn

    matrix = accuracy_matrix(rows, names, ends, done, groups)
    base = {r["task"]: r["metrics"].get("model_accuracy", math.nan) for r in rows if r["step"] == 0}
    caption = "model accuracy on the circuit analysis examples at each task end"
    fig = plots.accuracy_matrix_heatmap(matrix, baseline=pd.Series(base) if base else None, caption=caption)
    return [("accuracy_matrix", fig)]


def diagram_figures(graphs: dict[str, Graph], step: int) -> list:
    """One circuit diagram per task."""
    from circuitft import plots  # (pandas, matplotlib): only when a figure is drawn

    return [
        (f"circuit/{t}/diagram", plots.circuit_diagram(g, title=f"{t}, step {step}"))
        for t, g in graphs.items()
    ]


def run_hparams(trainer: Any, callback: Any) -> dict[str, Any]:
    """The stream's and the callback's settings for the HPARAMS table (beside the module's hparams)."""
    dm = trainer.datamodule
    s = callback.settings
    return {
        "data/tasks": ",".join(getattr(dm, "names", [])),
        "data/task_steps": ",".join(str(n) for n in dm.task_steps()) if hasattr(dm, "task_steps") else "",
        "data/batch_size": getattr(dm, "batch_size", None),
        "data/seed": getattr(dm, "seed", None),
        "world_size": trainer.world_size,
        "circuit/method": s.method,
        "circuit/metric": s.metric,
        "circuit/top_frac": callback.top_frac if callback.top_frac is not None else math.nan,
        "circuit/n_examples": callback.n_examples,
    }


def summary_paragraph(
    names: list[str], final: dict[str, float], seconds: float, wall: float, share: float, errors: int
) -> str:
    """One paragraph: final accuracies and faithfulness, backward transfer, analysis time and share."""
    acc = ", ".join(f"{t} {final[f'final/{t}/accuracy']:.2f}" for t in names)
    faith = ", ".join(f"{t} {final[f'final/{t}/faithfulness']:.2f}" for t in names)
    return (
        f"Trained {len(names)} task(s) in order {' -> '.join(names)}. Final model accuracy: {acc} "
        f"(average {final['final/average_accuracy']:.2f}); backward transfer "
        f"{final['final/backward_transfer']:+.2f}. Final circuit faithfulness: {faith}. Circuit analyses "
        f"took {seconds:.1f} s of this process's {wall:.1f} s ({100 * share:.1f}% of the wall time)"
        f"{f'; {errors} analysis failure(s) recorded in metrics.jsonl' if errors else ''}."
    )


def log_analysis(
    callback: Any,
    trainer: Any,
    step: int,
    graphs: dict[str, Graph],
    jaccard: dict[tuple[str, str], float],
    rows: list[dict[str, Any]],
) -> None:
    """One analysis in TensorBoard: each task's strongest edges, and (as the callback asks) the cross-task
    overlap heatmap, the accuracy matrix at stage ends and the circuit diagrams."""
    tensorboards = writers(trainer)
    if not tensorboards:
        return
    figures = []
    if callback.images:
        figures += overlap_figures(graphs, jaccard, step)
        plan = callback._schedule(trainer)
        ends = callback._ends(trainer)
        if step in ends:
            groups = [list(g) for g in plan.tasks]
            figures += accuracy_figures(rows, plan.names, ends, ends.index(step) + 1, groups)
    if callback.diagrams:
        too_large = [g.n_edges for g in graphs.values() if g.n_edges > MAX_DIAGRAM_EDGES]
        if too_large and not callback._warned_diagram:
            log.warning(
                "CircuitCallback diagrams: the model has %d edges (more than %d); circuit diagrams are skipped",
                too_large[0],
                MAX_DIAGRAM_EDGES,
            )
            callback._warned_diagram = True
        if not too_large:
            figures += diagram_figures(graphs, step)
    for writer in tensorboards:
        for task, graph in graphs.items():
            writer.add_text(f"circuit/{task}/top_edges", top_edges_markdown(graph), step)
        for tag, fig in figures:
            add_png(writer, tag, figures_module.figure_to_png(fig), step)
