"""CircuitCallback: EAP-IG circuits of every task at every checkpoint step and task end, while training runs.

At step 0 (the untuned model, optional), every ``every_n_steps`` optimizer steps (by default the run's
checkpoint interval, so circuits line up with saved checkpoints), at the end of every task (whatever the
interval, so each task's circuit at the end of its own training always exists) and at the end of training,
the callback takes a merged frozen copy of the LoRA model (the training model is never touched; on the
training device, in the model's dtype unless ``dtype: float32``), and for each task (``seen`` so far,
``all`` in the stream, or a list):

1. scores every edge with :func:`circuitft.eap.attribute` on the task's first ``n_examples`` validation pairs,
2. selects the circuit (top fraction of edges by default, pruned) and evaluates it, with its size curve
   (faithfulness at 0.1% ... 100% of edges from the same scores, and MIB's CPR and CMD from it) and,
   cross-task, every other task's circuit on this task's data, all on the same clean and corrupted runs;
   then scores the circuit on the task's first ``n_examples`` test rows, which took no part in finding it
   (``heldout``), and at stage ends (``split_half``) finds it on the two halves of its rows as well,
3. writes ``<log_dir>/circuits/step<SSSSSS>/<task>.safetensors`` (named like the checkpoints),
4. records a :class:`CircuitRecord` per task in ``<log_dir>/circuits/metrics.jsonl`` and logs
   ``circuit/<task>/...`` scalars, ``circuit_overlap/<a>~<b>/...``, ``circuit/seconds``, the strongest edges
   as text and figures to TensorBoard (see :mod:`circuitft.callbacks.board`).

Under DDP every rank analyses a block of each task's examples and the sums are gathered
(:mod:`circuitft.callbacks.ranks`); rank 0 writes files and logs. A failed analysis (``on_error: record``,
the default) is recorded in ``metrics.jsonl`` with its step, task and message, logged, and training goes
on, on every rank; ``on_error: raise`` stops the run on every rank. Attribution is deterministic, so a
resumed run rewrites the same files and records (keyed by step and task): a run resumed from a checkpoint
step re-analyses that step from the restored weights only where ``metrics.jsonl`` lacks a successful record
of it (the analysis of a step runs before that step's checkpoint is saved).

Task ends come from the stream's schedule (:mod:`circuitft.data.schedule`): every task of a mixed stage ends
where the stage ends, and a record's ``trained_tasks`` lists every task of the stage trained at its step.

Rank 0 shows a bar per analysis under circuitft's progress bar (``circuit AddSub @ step 40: attribute 3/8``)
and prints one line per task after it (``echo``), with a warning for a task whose model accuracy at the end
of its own training is below 20% (the model does not do the task).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from circuitft.callbacks import board, messages, writing
from circuitft.callbacks.engine import TaskResult, analyse, batches
from circuitft.callbacks.progress import AnalysisBar
from circuitft.callbacks.ranks import AnalysisFailed, Ranks
from circuitft.callbacks.records import RecordLog
from circuitft.data.schedule import Schedule
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.heldout import disjoint_rows
from circuitft.eap.settings import CROSS_TASK_AUTO, SIZES, CircuitSettings, check_sizes
from circuitft.errors import ConfigError
from circuitft.limits import MAX_ROWS, check_count
from circuitft.names import check_name
from circuitft.runfolder import RECORDS

TaskChoice = Literal["seen", "all"] | list[str]
log = logging.getLogger("circuitft")


class CircuitCallback(Callback):
    """Find, evaluate, save and log each task's circuit at checkpoint steps (see module docstring).

    Args:
        every_n_steps: analyse every n optimizer steps; None follows the checkpoint interval
            (``every_n_train_steps`` of the run's ModelCheckpoint), and task ends only if it has none.
        tasks: ``seen`` (tasks trained so far, the current one included), ``all``, or a list of names.
        method: attribution method: ``EAP-IG-inputs``, ``EAP``, ``EAP-IG-activations``, ``clean-corrupted``,
            ``exact`` (see ``circuitft circuit --help``).
        metric: what a circuit must preserve: ``kl``, ``logit_diff``, ``prob_diff`` or ``logprob``.
        ig_steps: integrated-gradient steps of the EAP-IG methods.
        n_examples: validation pairs per task used for attribution and evaluation (the first n).
        batch_size: attribution and evaluation batch size (per GPU).
        top_frac: circuit size as a fraction of the edges (default 5%, as in the prior work), then pruned.
        top_n: circuit size as a number of edges (replaces ``top_frac``).
        at_start: also analyse the model before any training (step 0).
        save_json: also write the reference library's ``graph.json`` next to each safetensors file.
        dtype: None keeps the model's dtype (float32 attribution buffers); ``float32`` analyses a float32
            copy; ``bfloat16`` uses bfloat16 buffers (half the memory).
        sizes: size curve fractions of the edges, each in (0, 1]; True: 0.1% ... 100%; False: none.
        cross_task: evaluate each task's circuit on every other task's data; None: on for 2 to 8 tasks;
            or a list of the tasks to compare.
        on_error: ``record`` (write the error to metrics.jsonl and go on) or ``raise`` (stop the run).
        diagrams: a circuit diagram per task per analysis in TensorBoard (skipped with one warning on
            models with more than 50,000 edges).
        images: the cross-task edge-Jaccard heatmap and the accuracy matrix in TensorBoard.
        dirname: folder under the run's log dir.
        accuracy: ``exact_match`` (every answer token) or ``first_token`` (the first answer token only, as the
            prior work scored model and circuit accuracy).
        progress: a bar for each analysis below the training bar (with circuitft's TaskProgressBar).
        echo: print one line per task after each analysis (faithfulness, accuracies, edge change) and warn
            when the model's accuracy on a task is below 20% (it does not do the task: its circuit says little).
        heldout: also score each circuit on the first ``n_examples`` rows of the task's ``test`` split, which
            took no part in finding it (``*_heldout`` metrics; circuits are found on ``val`` rows).
        split_half: at each stage end, also find each analysed task's circuit on the two halves of its
            ``n_examples`` rows and record the top-5% edge Jaccard of the two (``split_half_jaccard``).
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        tasks: TaskChoice = "seen",
        method: str = "EAP-IG-inputs",
        metric: str = "kl",
        ig_steps: int = 5,
        n_examples: int = 32,
        batch_size: int = 8,
        top_frac: float | None = DEFAULT_TOP_FRAC,
        top_n: int | None = None,
        at_start: bool = True,
        save_json: bool = False,
        dirname: str = "circuits",
        progress: bool = True,
        dtype: str | None = None,
        sizes: bool | list[float] = True,
        cross_task: bool | list[str] | None = None,
        on_error: Literal["record", "raise"] = "record",
        diagrams: bool = True,
        images: bool = True,
        accuracy: Literal["exact_match", "first_token"] = "exact_match",
        echo: bool = True,
        heldout: bool = True,
        split_half: bool = False,
    ) -> None:
        if top_n is not None:
            top_frac = None
        where = "CircuitCallback "
        if sizes is True:
            size_fracs: tuple[float, ...] = SIZES
        elif sizes is False or sizes is None:
            size_fracs = ()
        else:
            size_fracs = check_sizes(sizes, "CircuitCallback sizes")
        # the attribution settings, checked where they are declared (eap/settings.py); the default top 5%
        # is the pipeline's default circuit (widened on a graph too small for it)
        self.settings = CircuitSettings(
            method=method,
            metric=metric,
            ig_steps=ig_steps,
            batch_size=batch_size,
            top_frac=None if top_n is None and top_frac == DEFAULT_TOP_FRAC else top_frac,
            top_n=top_n,
            dtype=None if dtype == "float32" else dtype,
            accuracy=accuracy,
            baseline_samples=0,
            size_curve=",".join(map(repr, size_fracs)) if size_fracs else "false",
            where=where,
        )
        if every_n_steps is not None and every_n_steps <= 0:
            raise ConfigError(f"CircuitCallback every_n_steps must be positive, got {every_n_steps}")
        check_count(n_examples, "CircuitCallback n_examples", MAX_ROWS)
        if isinstance(tasks, str) and tasks not in ("seen", "all"):
            raise ConfigError(
                f"CircuitCallback tasks must be 'seen', 'all' or a list of names, got {tasks!r}"
            )
        check_name(dirname, "CircuitCallback dirname")
        if on_error not in ("record", "raise"):
            raise ConfigError(f"CircuitCallback on_error must be 'record' or 'raise', got {on_error!r}")
        self.every_n_steps, self.tasks, self.top_frac = every_n_steps, tasks, top_frac
        self.n_examples, self.at_start, self.save_json = n_examples, at_start, save_json
        self.dirname, self.progress, self.dtype = dirname, progress, dtype
        self.cross_task, self.on_error = cross_task, on_error
        self.diagrams, self.images, self.echo = diagrams, images, echo
        self.heldout, self.split_half = heldout, split_half
        self.cross_tasks: frozenset[str] = frozenset()  # set from the stream in setup()
        self._done: set[int] = set()
        self._trained = False  # whether this process trained a step (a finished run resumed trains none)
        self._root: Path | None = None
        self._names: list[str] = []
        self._seconds = 0.0  # analysis time of this process
        self._t_fit: float | None = None
        self._warned_diagram = False
        self.final: dict[str, float] = {}  # final/<task>/accuracy ... once the run has finished

    @property
    def folder(self) -> Path | None:
        """The run's circuits folder (known once the trainer has set the callback up)."""
        return self._root

    # ---- when ---------------------------------------------------------------------------------------
    def _interval(self, trainer: L.Trainer) -> int | None:
        if self.every_n_steps is not None:
            return self.every_n_steps
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                # TaskCheckpoint (circuitft's) exposes it; a plain ModelCheckpoint keeps it private (no public
                # accessor in lightning 2.6.6, checked).
                n = getattr(cb, "every_n_steps", None) or getattr(cb, "_every_n_train_steps", 0)
                if n:
                    return int(n)
        return None

    @staticmethod
    def _schedule(trainer: L.Trainer) -> Schedule:
        """The stream's map from stage to tasks to end step (:mod:`circuitft.data.schedule`)."""
        dm = trainer.datamodule
        if hasattr(dm, "schedule"):
            return dm.schedule()
        names = tuple(getattr(dm, "names", []) or [])
        return Schedule(names, tuple((n,) for n in names), tuple(None for _ in names))

    def _ends(self, trainer: L.Trainer) -> list[int]:
        """Global step at which each stage ends (every task of a mixed stage ends there)."""
        return [int(e) for e in self._schedule(trainer).ends if e is not None]

    def _is_analysis_step(self, trainer: L.Trainer, step: int) -> bool:
        n = self._interval(trainer)
        return step > 0 and (bool(n) and step % n == 0 or step in self._ends(trainer))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the output folder on every rank (``trainer.log_dir`` is a collective under DDP) and check
        the task options against the stream."""
        log_dir = trainer.log_dir or trainer.default_root_dir
        self._root = Path(log_dir) / self.dirname
        names = list(getattr(trainer.datamodule, "names", []) or [])
        self._names = names
        self.check_stream(names)
        if isinstance(self.cross_task, list):
            cross = frozenset(self.cross_task)
        elif self.cross_task is None:
            lo, hi = CROSS_TASK_AUTO
            cross = frozenset(names) if lo <= len(names) <= hi else frozenset()
        else:
            cross = frozenset(names) if self.cross_task else frozenset()
        self.cross_tasks = cross

    def check_stream(self, names: list[str]) -> None:
        """ConfigError when ``tasks`` or ``cross_task`` name tasks that are not in the stream ``names``
        (``circuitft fit`` calls this before anything is written)."""
        for option, chosen in (("tasks", self.tasks), ("cross_task", self.cross_task)):
            if isinstance(chosen, list):
                unknown = [t for t in chosen if t not in names]
                if unknown:
                    raise ConfigError(
                        f"CircuitCallback {option} {unknown} are not in the stream ({', '.join(names)})"
                    )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the wall clock of the run (for the callback's share of it); warn (rank 0) about each task
        whose val (discovery) or test (held-out) split has fewer rows than ``n_examples``."""
        self._t_fit = time.perf_counter()
        dm = trainer.datamodule
        if trainer.is_global_zero and hasattr(dm, "task_pairs"):
            splits = ("val", "test") if self.heldout else ("val",)
            for line in messages.short_splits(dm, self._names, splits, self.n_examples):
                log.warning("%s", line)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Analyse the untuned model (step 0) of a fresh run, or the checkpoint step a run resumes from.

        On resume the checkpoint's step is analysed again only if ``metrics.jsonl`` lacks a successful record
        of it for a task (the analysis of a step runs before the checkpoint of that step is saved, so it is
        normally there, with its TensorBoard events, which ``circuitft fit --ckpt_path`` keeps).
        """
        for writer in board.writers(trainer):
            board.add_layout(writer)
        step = trainer.global_step
        if step > 0 and step >= self._total_steps(trainer):
            return  # a finished run resumed: nothing is trained, its circuits are already there
        if step == 0 and self.at_start:
            self._analyse(trainer, pl_module)
        elif self._is_analysis_step(trainer, step) and not self._recorded(trainer, step):
            self._analyse(trainer, pl_module)

    def _recorded(self, trainer: L.Trainer, step: int) -> bool:
        """Whether every task analysed at ``step`` has a successful record (rank 0's answer, on every rank)."""
        tasks, _ = self._task_list(trainer)
        dm = trainer.datamodule

        def look() -> bool:
            assert self._root is not None
            done = {r["task"] for r in RecordLog(self._root / RECORDS).results() if r["step"] == step}
            wanted = {t for t in tasks if len(dm.task_pairs(t, "val"))}
            return wanted <= done

        try:
            return bool(Ranks().gather("*", look)[0])
        except AnalysisFailed:
            return False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Analyse at every interval step and task end (before ModelCheckpoint saves the same weights)."""
        self._trained = True
        step = trainer.global_step
        if step not in self._done and self._is_analysis_step(trainer, step):
            self._analyse(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Analyse the final weights if not done yet; write the run summary and HPARAMS entry.

        A run stopped early (``max_steps``, a time limit) is not analysed here, so that resuming it ends with
        exactly the records of an uninterrupted run.
        """
        total = self._total_steps(trainer)
        if self._trained and trainer.global_step == total and trainer.global_step not in self._done:
            self._analyse(trainer, pl_module)
        if self._trained and trainer.global_step == total:
            self._finish(trainer, pl_module)

    @staticmethod
    def _total_steps(trainer: L.Trainer) -> int:
        dm = trainer.datamodule
        return sum(dm.task_steps()) if hasattr(dm, "task_steps") else trainer.global_step

    # ---- what ---------------------------------------------------------------------------------------
    def _task_list(self, trainer: L.Trainer) -> tuple[list[str], list[str]]:
        """(tasks analysed now, tasks of the stage being trained); a stage's end step belongs to it."""
        plan = self._schedule(trainer)
        step = trainer.global_step
        if self.tasks == "seen":
            chosen = plan.seen_at(step)
        elif self.tasks == "all":
            chosen = plan.names
        else:
            chosen = list(self.tasks)
        return chosen, plan.trained_at(step)

    def _analyse(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._done.add(step)
        t0 = time.perf_counter()
        ranks = Ranks()
        tasks, trained = self._task_list(trainer)
        bar = AnalysisBar(trainer, step) if self.progress else None
        try:
            results = self._compute(trainer, pl_module, tasks, ranks, bar)
            if bar is not None:
                bar.phase("writing circuits and TensorBoard figures")
            ranks.together("*", lambda: self._write(trainer, step, trained, results, t0))
        except AnalysisFailed as err:
            if bar is not None:
                bar.close()
            self._seconds += time.perf_counter() - t0
            if trainer.is_global_zero:
                self._record_error(trainer, step, trained, err)
            if self.on_error == "raise":
                raise RuntimeError(f"circuit analysis at step {step} failed: {err}") from None
            return
        finally:
            if bar is not None:
                bar.close()
        self._seconds += time.perf_counter() - t0

    def _compute(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        tasks: list[str],
        ranks: Ranks,
        bar: AnalysisBar | None = None,
    ) -> dict[str, TaskResult]:
        # models.merge brings transformers' model classes and accelerate, which `circuitft fit --help` (it loads
        # this module to list the callback) must not import (tests/commands/test_help.py)
        from circuitft.models.merge import merged_copy

        dm = trainer.datamodule

        def examples() -> dict[str, Any]:
            chosen = {task: dm.task_pairs(task, "val") for task in tasks}
            return {t: p.subset(range(min(self.n_examples, len(p)))) for t, p in chosen.items() if len(p)}

        def heldout(pairs: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for t, p in pairs.items():
                test = dm.task_pairs(t, "test")
                out[t] = disjoint_rows(p, test.subset(range(min(self.n_examples, len(test)))))[0]
            return out

        pairs = ranks.together("*", examples)
        held = ranks.together("*", lambda: heldout(pairs)) if self.heldout else None
        step = trainer.global_step
        halves = list(pairs) if self.split_half and step > 0 and step in self._ends(trainer) else []
        was_training = pl_module.model.training
        copy_dtype = torch.float32 if self.dtype == "float32" else None

        def copy() -> torch.nn.Module:
            try:
                return merged_copy(pl_module.model, dtype=copy_dtype)
            finally:
                pl_module.model.train(was_training)

        model = ranks.together("*", copy)
        try:
            if bar is not None:
                bar.start(batches(pairs, self.settings, ranks, held, halves))
            report = None if bar is None else bar.report
            return analyse(model, pairs, self.settings, ranks, report, held, halves, self.cross_tasks)
        finally:
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ---- output (rank 0): circuitft.callbacks.writing -------------------------------------------------
    def _write(
        self, trainer: L.Trainer, step: int, trained: list[str], results: dict[str, TaskResult], t0: float
    ) -> None:
        writing.write(self, trainer, step, trained, results, t0)

    def _record_error(self, trainer: L.Trainer, step: int, trained: list[str], err: AnalysisFailed) -> None:
        writing.record_error(self, trainer, step, trained, err)

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writing.finish(self, trainer, pl_module)
