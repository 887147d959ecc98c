"""CircuitCallback: EAP-IG circuits of every task at every checkpoint step, while training runs.

At step 0 (the untuned model, optional), every ``every_n_steps`` optimizer steps (by default the
``every_n_train_steps`` of the run's ModelCheckpoint, so circuits line up with saved checkpoints) and at the
end of training, the callback takes a merged frozen copy of the LoRA model (the training model is never
touched), and for each task (``seen`` so far, ``all`` in the stream, or a list):

1. scores every edge with :func:`circuitft.eap.attribute` on the task's validation pairs,
2. selects the circuit (top fraction of edges by default, pruned) and evaluates it,
3. writes ``<log_dir>/circuits/step<SSSSSS>/<task>.safetensors`` (named like the checkpoints) (every edge score + the circuit),
4. logs ``circuit/<task>/...`` scalars (faithfulness, KL faithfulness %, model and circuit accuracy, sizes,
   edge and node change against the previous analysed step) and ``circuit_overlap/<a>~<b>/...`` between
   tasks at the same step to every logger (TensorBoard), and records a :class:`CircuitRecord` per task in
   ``<log_dir>/circuits/metrics.jsonl``.

Under DDP the analysis runs on rank 0 while the other ranks wait at a barrier (raise the process-group
timeout for long analyses, see the README). Attribution is deterministic, so a resumed run rewrites the
same files and records (keyed by step and task), never twice: a run resumed from a checkpoint step
re-analyses that step from the restored weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from circuitft.callbacks.records import CircuitRecord, RecordLog
from circuitft.errors import ConfigError
from circuitft.names import check_name, inside

TaskChoice = Literal["seen", "all"] | list[str]


class CircuitCallback(Callback):
    """Find, evaluate, save and log each task's circuit at checkpoint steps (see module docstring).

    Args:
        every_n_steps: analyse every n optimizer steps; None follows the ModelCheckpoint's
            ``every_n_train_steps`` (and only the end of training if it has none).
        tasks: ``seen`` (tasks trained so far, the current one included), ``all``, or a list of names.
        method, metric, ig_steps: attribution settings (see ``circuitft circuit --help``).
        n_examples: validation pairs per task used for attribution and evaluation (the first n).
        batch_size: attribution batch size.
        top_frac, top_n: circuit size (exactly one; default 5% of the edges, as in the prior work).
        at_start: also analyse the model before any training (step 0).
        save_json: also write the reference library's ``graph.json`` next to each safetensors file.
        dtype: attribution buffers, ``float32`` (default) or ``bfloat16`` (half the memory).
        dirname: folder under the run's log dir.
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
        top_frac: float | None = 0.05,
        top_n: int | None = None,
        at_start: bool = True,
        save_json: bool = False,
        dirname: str = "circuits",
        progress: bool = False,
        dtype: str | None = None,
    ) -> None:
        from circuitft.eap.attribute import check_method
        from circuitft.eap.metrics import check_metric
        from circuitft.eap.select import check_selection

        check_method(method)
        check_metric(metric)
        if top_n is not None:
            top_frac = None
        check_selection(None, top_n=top_n, top_frac=top_frac)
        if every_n_steps is not None and every_n_steps <= 0:
            raise ConfigError(f"CircuitCallback every_n_steps must be positive, got {every_n_steps}")
        if n_examples <= 0 or batch_size <= 0 or ig_steps <= 0:
            raise ConfigError("CircuitCallback n_examples, batch_size and ig_steps must be positive")
        from circuitft.eap.attribute import BUFFER_DTYPES

        if dtype is not None and dtype not in BUFFER_DTYPES:
            raise ConfigError(f"CircuitCallback dtype {dtype!r} is not one of {', '.join(BUFFER_DTYPES)}")
        if isinstance(tasks, str) and tasks not in ("seen", "all"):
            raise ConfigError(
                f"CircuitCallback tasks must be 'seen', 'all' or a list of names, got {tasks!r}"
            )
        check_name(dirname, "CircuitCallback dirname")
        self.every_n_steps, self.tasks = every_n_steps, tasks
        self.method, self.metric, self.ig_steps = method, metric, ig_steps
        self.n_examples, self.batch_size = n_examples, batch_size
        self.top_frac, self.top_n = top_frac, top_n
        self.at_start, self.save_json, self.dirname, self.progress = at_start, save_json, dirname, progress
        self.dtype = dtype
        self._done: set[int] = set()
        self._trained = False  # whether this process trained a step (a finished run resumed trains none)
        self._root: Path | None = None

    # ---- when ---------------------------------------------------------------------------------------
    def _interval(self, trainer: L.Trainer) -> int | None:
        if self.every_n_steps is not None:
            return self.every_n_steps
        for cb in trainer.checkpoint_callbacks:
            n = getattr(cb, "_every_n_train_steps", 0)
            if isinstance(cb, ModelCheckpoint) and n:
                return int(n)
        return None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Resolve the output folder on every rank (``trainer.log_dir`` is a collective under DDP)."""
        log_dir = trainer.log_dir or trainer.default_root_dir
        self._root = Path(log_dir) / self.dirname

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Analyse the untuned model (step 0) of a fresh run, or the checkpoint step a run resumes from.

        On resume the restored weights are those of the checkpoint's step, so the analysis reproduces the
        same files and records; ``circuitft fit --ckpt_path`` drops the crashed run's TensorBoard events from
        that step on, so the scalars are logged once.
        """
        step = trainer.global_step
        n = self._interval(trainer)
        if step > 0 and step >= self._total_steps(trainer):
            return  # a finished run resumed: nothing is trained, its circuits are already there
        if (step == 0 and self.at_start) or (step > 0 and n and step % n == 0):
            self._analyse(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Analyse at every interval step (before ModelCheckpoint saves the same weights)."""
        self._trained = True
        n = self._interval(trainer)
        step = trainer.global_step
        if n and step > 0 and step % n == 0 and step not in self._done:
            self._analyse(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Analyse the final weights of the stream if the last step was not an interval step.

        A run stopped early (``max_steps``, a time limit) is not analysed here, so that resuming it ends with
        exactly the records of an uninterrupted run.
        """
        total = self._total_steps(trainer)
        if self._trained and trainer.global_step == total and trainer.global_step not in self._done:
            self._analyse(trainer, pl_module)

    @staticmethod
    def _total_steps(trainer: L.Trainer) -> int:
        dm = trainer.datamodule
        return sum(dm.task_steps()) if hasattr(dm, "task_steps") else trainer.global_step

    # ---- what ---------------------------------------------------------------------------------------
    def _task_list(self, trainer: L.Trainer) -> tuple[list[str], str]:
        dm = trainer.datamodule
        names = list(dm.names)
        current = dm.current_task() if trainer.global_step > 0 else 0
        # At a task boundary the step belongs to the task that just finished.
        if trainer.global_step > 0 and hasattr(dm, "task_start"):
            while current > 0 and trainer.global_step <= dm.task_start(current):
                current -= 1
        if self.tasks == "seen":
            chosen = names[: current + 1]
        elif self.tasks == "all":
            chosen = names
        else:
            unknown = [t for t in self.tasks if t not in names]
            if unknown:
                raise ConfigError(
                    f"CircuitCallback tasks {unknown} are not in the stream ({', '.join(names)})"
                )
            chosen = list(self.tasks)
        return chosen, names[current]

    def _analyse(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._done.add(step)
        if trainer.is_global_zero:
            self._analyse_rank_zero(trainer, pl_module, step)
        trainer.strategy.barrier("circuit-callback")

    def _analyse_rank_zero(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        from circuitft.eap.attribute import attribute
        from circuitft.eap.evaluate import evaluate, faithfulness
        from circuitft.eap.graph import Graph
        from circuitft.eap.io import read_safetensors, save_graph
        from circuitft.eap.overlap import overlap
        from circuitft.eap.select import select
        from circuitft.models.merge import merged_copy

        assert self._root is not None
        tasks, trained = self._task_list(trainer)
        was_training = pl_module.model.training
        model = merged_copy(pl_module.model)
        pl_module.model.train(was_training)
        step_dir = self._root / f"step{step:06d}"  # as the checkpoints: step000040.ckpt
        graphs: dict[str, Graph] = {}
        records: list[CircuitRecord] = []
        scalars: dict[str, float] = {}
        for task in tasks:
            t0 = time.perf_counter()
            pairs = trainer.datamodule.task_pairs(task, "val")
            if len(pairs) == 0:
                continue
            pairs = pairs.subset(range(min(self.n_examples, len(pairs))))
            graph = Graph.from_model(model)
            attribute(
                model, graph, pairs, method=self.method, metric=self.metric, ig_steps=self.ig_steps,
                batch_size=self.batch_size, progress=self.progress, dtype=self.dtype,
            )  # fmt: skip
            select(graph, top_n=self.top_n, top_frac=self.top_frac)
            summary = faithfulness(
                evaluate(
                    model,
                    graph,
                    pairs,
                    metric=self.metric,
                    batch_size=self.batch_size,
                    progress=False,
                    dtype=self.dtype,
                )
            )
            summary["n_edges"] = float(graph.count_edges())
            summary["n_nodes"] = float(graph.count_nodes())  # without logits, as the reference counts
            graph.meta.update(step=step, task=task, trained_task=trained, n_examples=len(pairs))
            rel = f"{step_dir.name}/{check_name(task, 'CircuitCallback task')}.safetensors"
            save_graph(graph, inside(self._root, rel, key=f"CircuitCallback task {task!r}"))
            if self.save_json:
                save_graph(
                    graph, inside(self._root, f"{step_dir.name}/{task}.json", key="CircuitCallback task")
                )
            prev = self._previous_graph(task, step, graph.cfg, read_safetensors)
            moved = {}
            if prev is not None:
                o = overlap(prev, graph)
                moved = {
                    k: float(o[k]) for k in ("edge_change", "node_change", "edge_jaccard", "node_jaccard")
                }
            graphs[task] = graph
            records.append(
                CircuitRecord(
                    step=step, task=task, trained_task=trained, method=self.method, metric=self.metric,
                    ig_steps=self.ig_steps, n_examples=len(pairs), graph_path=rel, metrics=summary,
                    overlap=moved, seconds=round(time.perf_counter() - t0, 3),
                )
            )  # fmt: skip
            scalars.update({f"circuit/{task}/{k}": float(v) for k, v in {**summary, **moved}.items()})
        names = list(graphs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                o = overlap(graphs[a], graphs[b])
                for k in ("edge_jaccard", "node_jaccard"):
                    scalars[f"circuit_overlap/{a}~{b}/{k}"] = float(o[k])
        RecordLog(self._root / "metrics.jsonl").put(records)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        del model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None

    def _previous_graph(self, task: str, step: int, cfg: Any, reader: Any) -> Any:
        """The circuit of ``task`` at the latest analysed step before ``step`` (from disk, so resume works)."""
        assert self._root is not None
        earlier = sorted(
            (int(p.parent.name[4:]), p)
            for p in self._root.glob(f"step*/{task}.safetensors")
            if p.parent.name[4:].isdigit() and int(p.parent.name[4:]) < step
        )
        return reader(earlier[-1][1], cfg) if earlier else None
