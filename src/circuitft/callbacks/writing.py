"""The CircuitCallback's output on rank 0: records, scalars and lines after each analysis, failures, and
the run's summary at its end (functions of the callback, kept apart from when and what it analyses)."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L

from circuitft.callbacks import board, history, messages
from circuitft.callbacks.engine import TaskResult
from circuitft.callbacks.progress import say
from circuitft.callbacks.ranks import AnalysisFailed
from circuitft.callbacks.records import CircuitRecord, RecordLog
from circuitft.eap.io import save_graph
from circuitft.eap.overlap import overlap
from circuitft.names import check_name, inside
from circuitft.runfolder import RECORDS, step_dirname

CircuitCallback = Any  # the callback whose output this is (not imported: circuit.py imports this module)
log = logging.getLogger("circuitft")


# ---- output (rank 0) ------------------------------------------------------------------------------
def write(
    cb: CircuitCallback,
    trainer: L.Trainer,
    step: int,
    trained: list[str],
    results: dict[str, TaskResult],
    t0: float,
) -> None:
    """Save each task's graph, record it in ``metrics.jsonl``, log its scalars and figures, echo its line."""
    if not trainer.is_global_zero:
        return

    assert cb._root is not None
    ends = cb._schedule(trainer).task_ends()
    step_dir = cb._root / step_dirname(step)
    log_file = RecordLog(cb._root / RECORDS)
    earlier = log_file.results()
    records, scalars = [], {}
    s = cb.settings
    for task, r in results.items():
        graph = r.graph
        graph.meta.update(step=step, task=task, trained_task="+".join(trained), n_examples=r.n_examples)
        rel = f"{step_dir.name}/{check_name(task, 'CircuitCallback task')}.safetensors"
        moved = history.anchor_overlap(cb._root, task, step, graph, ends.get(task))
        save_graph(graph, inside(cb._root, rel, key=f"CircuitCallback task {task!r}"))
        if cb.save_json:
            save_graph(graph, inside(cb._root, f"{step_dir.name}/{task}.json", key="CircuitCallback task"))
        metrics = dict(r.summary)
        end = ends.get(task)
        if end is not None and step > end:  # forgetting_abs and forgetting_rel (history.py)
            metrics.update(history.forgetting_metrics(earlier, task, end, metrics))
        records.append(
            CircuitRecord(
                step=step,
                task=task,
                trained_task="+".join(trained),
                trained_tasks=list(trained),
                method=s.method,
                metric=s.metric,
                ig_steps=s.ig_steps,
                n_examples=r.n_examples,
                n_examples_heldout=r.n_heldout,
                graph_path=rel,
                metrics=metrics,
                overlap=moved,
                seconds=r.seconds,
                size_curve=r.size_curve,
                cross_task_faithfulness=r.cross_task,
            )
        )
        scalars.update({f"circuit/{task}/{k}": float(v) for k, v in {**metrics, **moved}.items()})
        for frac, point in r.size_curve.items():
            pct = f"{100 * float(frac):g}pct"
            scalars[f"circuit/{task}/size_curve/{pct}"] = point["faithfulness"]
        for other, v in r.cross_task.items():
            scalars[f"circuit_cross/{task}_on_{other}/relative_faithfulness"] = v["relative"]
    names = list(results)
    jaccard = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            o = overlap(results[a].graph, results[b].graph)
            jaccard[(a, b)] = jaccard[(b, a)] = float(o["top_k_jaccard"])
            for k in board.OVERLAP_SCALARS:  # each with its chance level and corrected value
                scalars[f"circuit_overlap/{a}~{b}/{k}"] = float(o[k])
    log_file.put(records)
    scalars["circuit/seconds"] = time.perf_counter() - t0
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=step)
    board.log_analysis(
        cb, trainer, step, {t: r.graph for t, r in results.items()}, jaccard, log_file.results()
    )
    if cb.echo:
        echo(cb, trainer, step, records, ends)


def echo(
    cb: CircuitCallback,
    trainer: L.Trainer,
    step: int,
    records: list[CircuitRecord],
    ends: dict[str, int | None],
) -> None:
    """One line per task above the progress bar; a warning when the model does not do a task, and one
    naming the tasks whose clean-corrupted gap is too small for faithfulness to mean much."""
    for rec in records:
        say(trainer, messages.task_line(rec))
        acc = rec.metrics.get("model_accuracy", math.nan)
        warning = messages.low_accuracy(rec.task, acc, step)
        if step > 0 and ends.get(rec.task) == step and warning:
            say(trainer, f"warning: {warning}", sys.stderr)
    gap = messages.small_gaps(records, step)
    if gap:
        say(trainer, f"warning: {gap}", sys.stderr)


def record_error(
    cb: CircuitCallback, trainer: L.Trainer, step: int, trained: list[str], err: AnalysisFailed
) -> None:
    """Record a failed analysis in ``metrics.jsonl`` (its step, task and message) and log it."""
    assert cb._root is not None
    s = cb.settings
    log.error("circuit analysis at step %d failed (%s): %s", step, err.task, err.message)
    rec = CircuitRecord(
        step=step,
        task=err.task,
        trained_task="+".join(trained),
        trained_tasks=list(trained),
        method=s.method,
        metric=s.metric,
        ig_steps=s.ig_steps,
        n_examples=0,
        graph_path="",
        error=err.message,
    )
    try:
        RecordLog(cb._root / RECORDS).put([rec])
        for logger in trainer.loggers:
            logger.log_metrics({"circuit/errors": 1.0}, step=step)
    except Exception as again:  # noqa: BLE001 - recording must not stop training
        log.error("could not record the failed analysis: %s", again)


# ---- end of the run -------------------------------------------------------------------------------
def finish(cb: CircuitCallback, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """The run's final numbers (per task of every stage), its summary paragraph and its HPARAMS entry."""
    if not trainer.is_global_zero or cb._root is None:
        return
    rows = RecordLog(cb._root / RECORDS).results()
    plan = cb._schedule(trainer)
    ends = cb._ends(trainer)
    if not ends or not cb._names or len(ends) != len(plan.stages):
        return
    final = history.final_metrics(rows, plan.names, ends, [list(g) for g in plan.tasks])
    wall = time.perf_counter() - cb._t_fit if cb._t_fit is not None else math.nan
    share = cb._seconds / wall if wall and math.isfinite(wall) else math.nan
    errors = len(RecordLog(cb._root / RECORDS).read()) - len(rows)
    text = board.summary_paragraph(cb._names, final, cb._seconds, wall, share, errors)
    for logger in trainer.loggers:
        logger.log_metrics({**final, "circuit/time_share": share}, step=trainer.global_step)
    hp = {**{k: v for k, v in dict(pl_module.hparams).items()}, **board.run_hparams(trainer, cb)}
    for writer in board.writers(trainer):
        writer.add_text("run/summary", text, trainer.global_step)
        board.add_hparams(writer, hp, final)
        writer.flush()
    cb.final = final
    log.info("%s", text)
