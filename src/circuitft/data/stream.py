"""TaskStreamDataModule: a list of stages served one after another, one Lightning epoch per stage.

A stage trains one task, or several at once (``mix``). Epoch ``i`` of ``fit`` trains on stage ``i`` for
exactly its number of optimizer steps. Batch ``k`` of a stage is a pure function of (task seeds, k, rank),
and the position inside the stream is derived from the trainer's global step, so a run resumed from any
checkpoint (mid-stage or at a stage boundary) sees exactly the batches an uninterrupted run would.
``state_dict`` records the position and the schedule; loading a checkpoint made for a different stream
raises a :class:`ConfigError`.

Splits: every task trains on its ``train`` split, validates (and circuits are found) on ``val``, and
``circuitft test`` evaluates on ``test``; no clean prompt is in two splits (:mod:`circuitft.data.splits`).
The rows of every split are kept in the run folder (:mod:`circuitft.data.runfiles`).

Tasks are indexed in stage order (a mixed stage contributes each of its tasks): ``names`` lists them, and
validation batches carry the index of their task. During ``fit`` they cover the tasks of the stages seen
so far (``validate_on="seen"``) or every task (``"all"``: forward transfer shows as well).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from circuitft.data.batches import ListDataset, RangeSampler, StageBatches, shares
from circuitft.data.pairs import PromptPairs, tokenize_pairs
from circuitft.data.runfiles import keep_rows
from circuitft.data.schedule import Schedule
from circuitft.data.sources import load_split_rows
from circuitft.data.splits import SPLITS
from circuitft.data.stages import TaskConfig, components, stage_from_dict, stage_name
from circuitft.data.tasks import get_task, make_pairs
from circuitft.errors import ConfigError, DataError
from circuitft.limits import MAX_BATCH_SIZE, check_count
from circuitft.names import check_name
from circuitft.runfolder import RunFolder

log = logging.getLogger(__name__)


class TaskStreamDataModule(L.LightningDataModule):
    """A stream of stages trained one after another (see module docstring).

    Args:
        tasks: the stages in training order, each ``{task: NAME, steps: N, ...}`` (``--data.tasks.help`` lists
            every key: source file, n_train/n_val/n_test, params, seed, lr, mix).
        batch_size: training rows per device and accumulated micro-batch (null: 8, or from
            ``global_batch_size``).
        val_batch_size: validation rows per batch (null: the training batch size).
        validate_on: which tasks each validation scores: ``seen`` (trained so far) or ``all`` (forward transfer
            shows too).
        seed: data seed; task ``i`` uses ``seed + i`` unless it sets its own ``seed``.
        prepend_bos: prepend the tokenizer's BOS token to prompts (null: if the tokenizer has one).
        global_batch_size: rows of one optimizer step whatever the number of devices (divided by the world
            size times ``trainer.accumulate_grad_batches``; not with ``batch_size``).
        analysis_tasks: tasks no stage trains (task fields of a stage, no steps): their rows are built and
            kept, and validation (``validate_on: all``) and the circuit callback (``tasks: all``) cover them.
            A shared sweep prefix lists here the tasks of the runs that continue from it, each with the seed
            it has in its run, so that their circuits at the prefix's end are found once.
    """

    def __init__(
        self,
        tasks: list[TaskConfig],
        batch_size: int | None = None,
        val_batch_size: int | None = None,
        validate_on: Literal["seen", "all"] = "seen",
        seed: int = 0,
        prepend_bos: bool | None = None,
        global_batch_size: int | None = None,
        analysis_tasks: list[TaskConfig] | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("data.tasks is empty: give at least one task")
        self.stages = [t if isinstance(t, TaskConfig) else stage_from_dict(t, i) for i, t in enumerate(tasks)]
        self.tasks = self.stages  # the configured list (kept under its old name)
        self.stage_names = [stage_name(t) for t in self.stages]
        self.units: list[TaskConfig] = []  # one per task, in stage order
        self.stage_tasks: list[list[int]] = []
        for i, t in enumerate(self.stages):
            where = f"data.tasks[{i}] ({self.stage_names[i]})"
            if (t.steps is None) == (t.epochs is None):
                raise ConfigError(f"{where}: give exactly one of steps or epochs")
            size = t.steps if t.steps is not None else t.epochs
            if size <= 0:
                kind = "steps" if t.steps is not None else "epochs"
                raise ConfigError(f"{where}: {kind} must be positive, got {size}")
            if t.lr is not None and not (isinstance(t.lr, (int, float)) and t.lr > 0):
                raise ConfigError(f"{where}: lr must be positive, got {t.lr!r}")
            parts = components(t, where)
            self.stage_tasks.append(list(range(len(self.units), len(self.units) + len(parts))))
            for u in parts:
                if u.n_train <= 0 or u.n_val < 0 or (u.n_test is not None and u.n_test < 0):
                    raise ConfigError(f"{where}: n_train must be positive, n_val and n_test >= 0")
            self.units += parts
        self.n_trained = len(self.units)  # the tasks some stage trains; analysis_tasks follow them
        self.units += [
            u if isinstance(u, TaskConfig) else stage_from_dict({**u, "steps": 1}, i)
            for i, u in enumerate(analysis_tasks or [])
        ]
        self.names = [u.name or u.task for u in self.units]
        self.stage_of = [i for i, idx in enumerate(self.stage_tasks) for _ in idx]
        self.stage_of += [len(self.stages) - 1] * (len(self.units) - self.n_trained)
        for u, name, i in zip(self.units, self.names, self.stage_of, strict=True):
            check_name(name, f"data.tasks[{i}].{'name' if u.name else 'task'}")  # names become file names

        for j, u in enumerate(self.units):
            if u.source is None:
                try:
                    get_task(u.task).resolve(u.params)
                except DataError as err:
                    i = self.stage_of[j]
                    raise DataError(f"data.tasks[{i}] ({self.stage_names[i]}): {err}") from None
        dupes = sorted({n for n in self.names if self.names.count(n) > 1})
        if dupes:
            raise ConfigError(f"data.tasks: duplicate task names {dupes}; set a distinct `name` for each")
        if batch_size is not None and global_batch_size is not None:
            raise ConfigError("give data.batch_size (per device) or data.global_batch_size, not both")
        for key, value in (("batch_size", batch_size), ("global_batch_size", global_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
            if value is not None:
                check_count(value, f"data.{key}", MAX_BATCH_SIZE)
        if val_batch_size is not None:
            check_count(val_batch_size, "data.val_batch_size", MAX_BATCH_SIZE)
        if validate_on not in ("seen", "all"):
            raise ConfigError(f"data.validate_on must be 'seen' or 'all', got {validate_on!r}")
        self.batch_size = batch_size if batch_size is not None or global_batch_size is not None else 8
        self.global_batch_size = global_batch_size
        self.val_batch_size = val_batch_size or self.batch_size or global_batch_size
        self.validate_on, self.seed, self.prepend_bos = validate_on, seed, prepend_bos
        for i, t in enumerate(self.stages):
            if len(self.stage_tasks[i]) > 1 and self.batch_size is not None:
                try:
                    shares(self.batch_size, t.weights or [1.0] * len(self.stage_tasks[i]))
                except ConfigError as err:
                    raise ConfigError(f"data.tasks[{i}] ({self.stage_names[i]}): {err}") from None
        self.tokenizer = None  # set by setup() from the LightningModule, or by the caller
        self._pairs: dict[str, dict[str, PromptPairs]] = {}
        self._loaded_state: dict[str, Any] | None = None

    # ---- data -------------------------------------------------------------------------------------------
    def task_seed(self, j: int) -> int:
        """Data seed of task ``j`` (recorded in the config as ``seed`` plus position unless set)."""
        u = self.units[j]
        return u.seed if u.seed is not None else self.seed + j

    def device_batch_size(self) -> int:
        """Training rows per device and micro-batch (from ``global_batch_size`` when that is given)."""
        if self.global_batch_size is None:
            return int(self.batch_size)
        _, world, accum = self._world()
        if self.global_batch_size % (world * accum):
            raise ConfigError(
                f"data.global_batch_size ({self.global_batch_size}) is not divisible by the number of devices "
                f"({world}) times trainer.accumulate_grad_batches ({accum})"
            )
        return self.global_batch_size // (world * accum)

    def setup(self, stage: str | None = None) -> None:
        """Build every task's PromptPairs with the module's tokenizer (cheap; done once) and keep them."""
        if self.tokenizer is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            self.tokenizer = getattr(module, "tokenizer", None)
            if self.tokenizer is None:
                raise ConfigError("TaskStreamDataModule needs a tokenizer (from the LightningModule)")
        tr = self.trainer
        if tr is not None and tr.world_size > 1:
            if getattr(tr._accelerator_connector, "use_distributed_sampler", False):
                raise ConfigError(
                    "set trainer.use_distributed_sampler: false (the task stream shards batches by rank itself)"
                )
        if not self._pairs:
            for j in range(len(self.units)):
                self._pairs[self.names[j]] = self._build(j)
        if tr is not None:
            self.device_batch_size()  # a global batch size the devices do not divide fails here
            if tr.is_global_zero:
                self._keep_rows(stage)
        if tr is not None and stage in ("fit", None):
            # One epoch per stage; loaders rebuilt each epoch (stage i = epoch i).
            tr.fit_loop.max_epochs = len(self.stages)
            tr.reload_dataloaders_every_n_epochs = 1
            self.check_val_interval(tr.val_check_interval, self._world()[2])

    def _keep_rows(self, stage: str | None) -> None:
        tr = self.trainer
        root = Path(tr.default_root_dir)
        ckpt = getattr(tr.checkpoint_callback, "dirpath", None) or RunFolder(root).checkpoints
        self.check_rows(root, stage not in ("fit", None) or any(Path(ckpt).glob("*.ckpt")), write=True)

    def check_rows(self, root: str | Path, resuming: bool, write: bool = False) -> None:
        """Compare (and with ``write``, keep) every task's rows with ``<root>/data/<task>/<split>.csv``.

        Builds the rows if needed (``tokenizer`` must be set). A resumed run whose rows differ from the kept
        ones raises a :class:`DataError` naming the file (see :mod:`circuitft.data.runfiles`).
        """
        if not self._pairs:
            for j in range(len(self.units)):
                self._pairs[self.names[j]] = self._build(j)
        rows = {(n, s): self._pairs[n][s].rows for n in self.names for s in SPLITS}
        keep_rows(root, rows, resuming, write)

    def _build(self, j: int) -> dict[str, PromptPairs]:
        u, name = self.units[j], self.names[j]
        i = self.stage_of[j]
        n_test = u.n_val if u.n_test is None else u.n_test
        try:
            if u.source is None:
                out = {}
                for split, n in zip(SPLITS, (u.n_train, u.n_val, n_test), strict=True):
                    if n:
                        seed = self.task_seed(j)
                        out[split] = make_pairs(
                            u.task, self.tokenizer, n, seed, self.prepend_bos, split, **u.params
                        )
            else:
                out = self._load_source(u, name)
        except DataError as err:
            raise DataError(f"data.tasks[{i}] ({self.stage_names[i]}): {err}") from None
        if "train" not in out:
            raise DataError(f"data.tasks[{i}] ({self.stage_names[i]}): task {name} has no training rows")
        for split in SPLITS:
            out.setdefault(split, out["train"].subset([]))
            out[split].task = name
        asked = {"val": u.n_val, "test": n_test}
        if u.source is None:
            asked["train"] = u.n_train
        for split, n in asked.items():
            if n and len(out[split]) < n:
                log.warning(
                    "task %s: split %s has %d rows, fewer than the %d asked (data.tasks[%d]); numbers on it "
                    "rest on %d rows",
                    name,
                    split,
                    len(out[split]),
                    n,
                    i,
                    len(out[split]),
                )
        return out

    def _load_source(self, u: TaskConfig, name: str) -> dict[str, PromptPairs]:
        rows, dropped = load_split_rows(u.source)
        n_test = u.n_val if u.n_test is None else u.n_test
        caps = {"train": None, "val": u.n_val, "test": n_test}
        for split, n in dropped.items():
            if n:
                log.warning(
                    "%s: %d %s rows dropped (their clean prompt is in an earlier split)", u.source, n, split
                )
        out = {}
        for split in SPLITS:
            part = rows[split][: caps[split]] if caps[split] is not None else rows[split]
            if part:
                out[split] = tokenize_pairs(
                    part, self.tokenizer, name, self.prepend_bos, "error", source=u.source
                )
        return out

    def check_val_interval(self, every: Any, accumulate: int = 1) -> None:
        """ConfigError when an integer ``val_check_interval`` exceeds the batches of the shortest stage."""
        steps = [t.steps for t in self.stages if t.steps is not None]
        if self._pairs:
            steps = self.task_steps()
        if isinstance(every, int) and steps and every > min(steps) * accumulate:
            raise ConfigError(
                f"trainer.val_check_interval ({every}) is larger than the shortest task "
                f"({min(steps) * accumulate} batches); use at most that, or a fraction such as 0.5"
            )

    def task_pairs(self, name: str, split: Literal["train", "val", "test"] = "val") -> PromptPairs:
        """The PromptPairs of task ``name`` (``split`` train, val or test); call after ``setup``."""
        if name not in self._pairs:
            raise ConfigError(f"no task named {name!r} in the stream; tasks: {', '.join(self.names)}")
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self._pairs[name][split]

    # ---- schedule ---------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int, int]:
        tr = self.trainer
        if tr is None:
            return 0, 1, 1
        return tr.global_rank, tr.world_size, max(1, int(tr.accumulate_grad_batches))

    def task_steps(self) -> list[int]:
        """Optimizer steps of every stage (``epochs`` converted with the training rows and batch size)."""
        _, world, accum = self._world()
        out = []
        for i, t in enumerate(self.stages):
            if t.steps is not None:
                out.append(int(t.steps))
            else:
                idx = self.stage_tasks[i]
                if self._pairs:
                    rows = sum(len(self._pairs[self.names[j]]["train"]) for j in idx)
                else:
                    rows = sum(self.units[j].n_train for j in idx)
                per_step = self.global_batch_size or self.batch_size * world * accum
                out.append(max(1, math.ceil(t.epochs * rows / per_step)))
        return out

    def schedule(self) -> Schedule:
        """The map from stage to tasks to end step (:mod:`circuitft.data.schedule`)."""
        steps = tuple(self.task_steps())
        groups = tuple(tuple(self.names[j] for j in idx) for idx in self.stage_tasks)
        return Schedule(tuple(self.stage_names), groups, steps, tuple(self.names[self.n_trained :]))

    def stage_lrs(self) -> list[float | None]:
        """Learning rate set by each stage (None: the model's policy)."""
        return [t.lr for t in self.stages]

    def task_start(self, j: int) -> int:
        """Global optimizer step at which task ``j`` (its stage) starts."""
        return sum(self.task_steps()[: self.stage_of[j]])

    def current_stage(self) -> int:
        """Index of the stage being trained (the trainer's epoch, clipped to the stream)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return min(epoch, len(self.stages) - 1)

    def current_task(self) -> int:
        """Index of the last task of the stage being trained (all tasks up to it have been seen)."""
        return self.stage_tasks[self.current_stage()][-1]

    # ---- loaders ----------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Batches of the current stage, starting after those the global step says are done."""
        i = self.current_stage()
        rank, world, accum = self._world()
        total = self.task_steps()[i] * accum
        start_step = sum(self.task_steps()[:i])
        done = (self.trainer.global_step - start_step) * accum if self.trainer is not None else 0
        start = min(max(0, done), total)
        idx = self.stage_tasks[i]
        ds = StageBatches(
            [self._pairs[self.names[j]]["train"] for j in idx],
            [self.task_seed(j) for j in idx],
            self.stages[i].weights or [1.0] * len(idx),
            i,
            self.device_batch_size(),
            rank,
            world,
        )
        return self._loader(ds, RangeSampler(start, total))

    def val_task_indices(self) -> list[int]:
        """Tasks validated now: seen so far (or all) during fit, every task in validate/test."""
        tr = self.trainer
        fitting = tr is not None and tr.state.fn is not None and tr.state.fn.value == "fit"
        if fitting and self.validate_on == "seen":
            return list(range(self.current_task() + 1))
        return list(range(len(self.units)))

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world, _ = self._world()
        items = []
        for j in self.val_task_indices():
            pairs = self._pairs[self.names[j]][split]
            for start in range(0, len(pairs), self.val_batch_size):
                items.append({"task_idx": j, "batch": pairs.batch(slice(start, start + self.val_batch_size))})
        items = items[rank::world]  # uneven shards are fine: metrics are summed across ranks
        return self._loader(ListDataset(items), RangeSampler(0, len(items)))

    def val_dataloader(self) -> DataLoader:
        """Val-split batches of the tasks in :meth:`val_task_indices`, each tagged with its task index."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test-split batches of every task."""
        return self._eval_loader("test")

    @staticmethod
    def _loader(ds: Dataset, sampler: RangeSampler) -> DataLoader:
        # batch_size=None: items are whole batches. Own generator: creating the iterator must not consume
        # the global RNG (a resumed run would otherwise drift from an uninterrupted one).
        return DataLoader(
            ds, batch_size=None, sampler=sampler, collate_fn=_identity, generator=torch.Generator()
        )

    # ---- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stream position (stage, step inside it) and the schedule it belongs to."""
        step = self.trainer.global_step if self.trainer is not None else 0
        i = self.current_stage()
        return {
            "task_idx": i,
            "step_in_task": step - sum(self.task_steps()[:i]),
            "global_step": step,
            "tasks": list(self.stage_names),
            "task_steps": self.task_steps(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check the checkpoint was made for this stream (names and steps); the position follows the step."""
        if state.get("tasks") != self.stage_names or state.get("task_steps") != self.task_steps():
            raise ConfigError(
                f"the checkpoint was made for the task stream {state.get('tasks')} with steps "
                f"{state.get('task_steps')}; this config has {self.stage_names} with steps {self.task_steps()}"
            )
        self._loaded_state = dict(state)


def _identity(x: Any) -> Any:
    return x
