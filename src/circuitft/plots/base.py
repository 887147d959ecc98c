"""Figures without pyplot: a private Agg canvas per figure, PNG bytes, atomic PNG + SVG files."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from circuitft.files import atomic_write


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A Figure on its own Agg canvas (not registered with pyplot, so nothing global changes)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path_without_ext: str | os.PathLike[str], dpi: int = 100) -> list[Path]:
    """Write ``<path>.png`` and ``<path>.svg`` (each via a temp file + rename); returns both paths."""
    base = Path(path_without_ext)
    written = []
    engine = fig.get_layout_engine()
    try:
        for fmt in ("png", "svg"):
            path = base.with_name(base.name + "." + fmt)
            atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi))
            written.append(path)
            fig.set_layout_engine("none")  # the layout is done: the SVG keeps the PNG's positions
    finally:
        fig.set_layout_engine(engine)
    return written


def no_data(fig: Figure, message: str) -> Figure:
    """Write ``message`` in the middle of an empty figure (a panel with nothing to show)."""
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig
