"""The sweep's time estimate: seconds per training step and per analysis, measured on its finished runs.

From what their folders recorded: the span of their TensorBoard events (training, validation, checkpoints and
analyses) and the ``circuit/seconds`` of each analysis, and the wall time the sweep wrote in each ``DONE``
(the start-up outside the events: loading the model). :func:`estimate_line` in :mod:`circuitft.sweeps.plan`
turns them into the dry run's footer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from circuitft.runfolder import RunFolder

MAX_TIMED_RUNS = 8  # finished runs read for the estimate (the most recent ones)


@dataclass
class Rates:
    """Seconds per training step and per analysis, measured on ``n_runs`` finished runs."""

    step_s: float
    analysis_s: float
    n_runs: int
    startup_s: float | None = None  # a run's wall time outside its events (start-up, loading the model)


def measured_rates(root: Path, plans: Sequence[Any]) -> Rates | None:
    """Rates from the finished runs of the sweep (at most :data:`MAX_TIMED_RUNS`, the latest): each run's
    TensorBoard event span less its analyses' ``circuit/seconds``, over its steps; the analyses' seconds over
    their count. None when no finished run recorded them."""
    finished = [p for p in plans if p.state == "done" and p.steps]
    finished.sort(key=lambda p: RunFolder(root / p.name).done_marker.stat().st_mtime, reverse=True)
    train_s = analysis_s = 0.0
    steps = analyses = used = 0
    startups = []
    for plan in finished[:MAX_TIMED_RUNS]:
        timing = event_timing(root / plan.name)
        if timing is None:
            continue
        span, circuit_s = timing
        n = plan.analyses_done
        if span <= circuit_s or (circuit_s > 0 and n == 0):
            continue
        train_s += span - circuit_s
        analysis_s += circuit_s
        steps += plan.steps or 0
        analyses += n
        used += 1
        wall = run_seconds(root / plan.name)
        if wall is not None:
            startups.append(max(0.0, wall - span))
    if not used or not steps:
        return None
    startup = sum(startups) / len(startups) if startups else None
    return Rates(train_s / steps, analysis_s / analyses if analyses else 0.0, used, startup)


def run_seconds(folder: Path) -> float | None:
    """The wall seconds of a finished run as its sweep recorded them in ``DONE`` (``seconds: S``), or None."""
    return RunFolder(folder).done_seconds()


def event_timing(folder: Path) -> tuple[float, float] | None:
    """(seconds spanned by the run's TensorBoard events, sum of its ``circuit/seconds``), or None."""
    # a run started from a shared prefix holds a copy of the prefix's scalars (``*.prefix``): not its own time
    files = sorted(p for p in folder.glob("events.out.tfevents.*") if not p.name.endswith(".prefix"))
    if not files:
        return None
    span = circuit = 0.0
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        try:
            acc.Reload()
            start = acc.FirstEventTimestamp()
        except Exception:  # noqa: BLE001 - an unreadable or empty event file: no timing from it
            continue
        tags = acc.Tags().get("scalars", [])
        last = max((acc.Scalars(t)[-1].wall_time for t in tags if acc.Scalars(t)), default=start)
        span += max(0.0, last - start)
        if "circuit/seconds" in tags:
            circuit += sum(float(e.value) for e in acc.Scalars("circuit/seconds"))
    return (span, circuit) if span > 0 else None


def duration(seconds: float) -> str:
    """``1 h 05 min``, ``4 min 10 s``, ``12 s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
