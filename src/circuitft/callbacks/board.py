"""What the circuit callback adds to TensorBoard besides scalars: layout, text, hyper-parameters, images.

Written through the ``SummaryWriter`` of the run's TensorBoardLogger (``logger.experiment``), on rank 0 only.

- custom scalars (``add_custom_scalars``): one chart with every task's validation accuracy, one with every
  task's faithfulness, one with every task's edge change;
- text: ``circuit/<task>/top_edges`` (the 20 strongest edges and their scores) at each analysis, and
  ``run/summary`` (one paragraph) at the end;
- HPARAMS: the run's hyper-parameters with its final metrics, so the runs of a sweep line up in one table;
- images: figures made by :mod:`circuitft.plots`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from circuitft.eap.graph import Graph

TOP_EDGES = 20
LAYOUT = {
    "circuitft": {
        "accuracy (every task)": ["Multiline", [r"^val/[^/]+/acc$"]],
        "faithfulness (every task)": ["Multiline", [r"^circuit/[^/]+/faithfulness$"]],
        "edge change (every task)": ["Multiline", [r"^circuit/[^/]+/edge_change$"]],
    }
}


def writers(trainer: Any) -> list[Any]:
    """The SummaryWriters of the trainer's TensorBoard loggers (none on ranks other than 0)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def add_layout(writer: Any) -> None:
    """The three multi-task charts of the CUSTOM SCALARS tab."""
    writer.add_custom_scalars(LAYOUT)


def top_edges_markdown(graph: Graph, n: int = TOP_EDGES) -> str:
    """A markdown table of the ``n`` edges with the largest |score| (in the circuit or not)."""
    from circuitft.eap.overlap import top_k_edges

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
    from torch.utils.tensorboard.summary import hparams as hparams_summary

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
    import struct

    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    fw = writer.file_writer if hasattr(writer, "file_writer") else writer._get_file_writer()
    fw.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
