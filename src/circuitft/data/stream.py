"""TaskStreamDataModule: a list of tasks served one after another, one Lightning epoch per task.

Epoch ``i`` of ``fit`` trains on task ``i`` for exactly its number of optimizer steps. Batch ``k`` of a task
is a pure function of (task seed, k, rank), and the position inside the stream is derived from the trainer's
global step, so a run resumed from any checkpoint (mid-task or at a task boundary) sees exactly the batches
an uninterrupted run would. ``state_dict`` records the position and the schedule; loading a checkpoint made
for a different stream raises a :class:`ConfigError`.

Validation batches carry the index of their task; during ``fit`` they cover the tasks seen so far
(``validate_on="seen"``) or every task of the stream (``"all"``: forward transfer shows as well).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from circuitft.data.pairs import PromptPairs
from circuitft.errors import ConfigError, DataError
from circuitft.names import check_name


@dataclass
class TaskConfig:
    """One stage of the stream.

    ``task`` is a built-in generator name (``circuitft tasks list``) or, with ``source``, the label of a
    CSV/JSONL file or ``datasets`` source. Give ``steps`` (optimizer steps) or ``epochs`` (passes over the
    training rows). ``params`` go to the generator (e.g. ``{lo: 0, hi: 9}``); ``seed`` defaults to the
    stream's ``seed`` plus the task's position. ``name`` (default ``task``) must be unique in the stream.
    """

    task: str
    steps: int | None = None
    epochs: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    n_train: int = 1000
    n_val: int = 200
    seed: int | None = None
    name: str | None = None


class _TaskBatches(Dataset):
    """Batch ``k`` of one task on one rank: rows from seeded per-pass permutations of the training rows."""

    def __init__(
        self, pairs: PromptPairs, task_idx: int, batch_size: int, seed: int, rank: int, world: int
    ) -> None:
        self.pairs, self.task_idx, self.batch_size = pairs, task_idx, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, p: int) -> torch.Tensor:
        if p not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + p)
            self._perms[p] = torch.randperm(len(self.pairs), generator=g)
        return self._perms[p]

    def rows(self, k: int) -> list[int]:
        """Training-row indices of local batch ``k`` (global batch ``k * world + rank``)."""
        n, start = len(self.pairs), (k * self.world + self.rank) * self.batch_size
        return [int(self._perm(i // n)[i % n]) for i in range(start, start + self.batch_size)]

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict[str, Any]:
        return {"task_idx": self.task_idx, "batch": self.pairs.batch(self.rows(k))}


class _ListDataset(Dataset):
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class _RangeSampler(DistributedSampler):
    """Yields ``start..total-1`` but reports ``total`` as its length (Lightning counts the batches already
    done in a resumed epoch). A DistributedSampler subclass so Lightning does not replace it under DDP:
    ranks are handled by the dataset."""

    def __init__(self, start: int, total: int) -> None:  # no super().__init__: no process group needed
        self.start, self.total, self.epoch = start, total, 0

    def __iter__(self):
        return iter(range(self.start, self.total))

    def __len__(self) -> int:
        return self.total


class TaskStreamDataModule(L.LightningDataModule):
    """A stream of tasks trained one after another (see module docstring)."""

    def __init__(
        self,
        tasks: list[TaskConfig],
        batch_size: int = 8,
        val_batch_size: int | None = None,
        validate_on: Literal["seen", "all"] = "seen",
        seed: int = 0,
        prepend_bos: bool | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("data.tasks is empty: give at least one task")
        self.tasks = [t if isinstance(t, TaskConfig) else TaskConfig(**t) for t in tasks]
        self.names = [t.name or t.task for t in self.tasks]
        for i, (t, name) in enumerate(zip(self.tasks, self.names, strict=True)):
            check_name(name, f"data.tasks[{i}].{'name' if t.name else 'task'}")  # names become file names
            where = f"data.tasks[{i}] ({name})"
            if (t.steps is None) == (t.epochs is None):
                raise ConfigError(f"{where}: give exactly one of steps or epochs")
            size = t.steps if t.steps is not None else t.epochs
            if size <= 0:
                kind = "steps" if t.steps is not None else "epochs"
                raise ConfigError(f"{where}: {kind} must be positive, got {size}")
            if t.n_train <= 0 or t.n_val < 0:
                raise ConfigError(f"{where}: n_train must be positive and n_val >= 0")
        if any(t.source is None for t in self.tasks):
            from circuitft.data.tasks import get_task

            for i, t in enumerate(self.tasks):
                if t.source is None:
                    try:
                        get_task(t.task).resolve(t.params)
                    except DataError as err:
                        raise DataError(f"data.tasks[{i}] ({self.names[i]}): {err}") from None
        dupes = sorted({n for n in self.names if self.names.count(n) > 1})
        if dupes:
            raise ConfigError(f"data.tasks: duplicate task names {dupes}; set a distinct `name` for each")
        if batch_size <= 0:
            raise ConfigError(f"data.batch_size must be positive, got {batch_size}")
        if validate_on not in ("seen", "all"):
            raise ConfigError(f"data.validate_on must be 'seen' or 'all', got {validate_on!r}")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.validate_on, self.seed, self.prepend_bos = validate_on, seed, prepend_bos
        self.tokenizer = None  # set by setup() from the LightningModule, or by the caller
        self._pairs: dict[str, dict[str, PromptPairs]] = {}
        self._loaded_state: dict[str, Any] | None = None

    # ---- data -------------------------------------------------------------------------------------------
    def task_seed(self, i: int) -> int:
        """Data seed of task ``i`` (recorded in the config as ``seed`` plus position unless set)."""
        t = self.tasks[i]
        return t.seed if t.seed is not None else self.seed + i

    def setup(self, stage: str | None = None) -> None:
        """Build every task's PromptPairs with the module's tokenizer (cheap; done once)."""
        if self.tokenizer is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            self.tokenizer = getattr(module, "tokenizer", None)
            if self.tokenizer is None:
                raise ConfigError("TaskStreamDataModule needs a tokenizer (from the LightningModule)")
        if not self._pairs:
            for i in range(len(self.tasks)):
                self._pairs[self.names[i]] = self._build(i)
        if self.trainer is not None and stage in ("fit", None):
            # One epoch per task; loaders rebuilt each epoch (task i = epoch i).
            self.trainer.fit_loop.max_epochs = len(self.tasks)
            self.trainer.reload_dataloaders_every_n_epochs = 1
            self.check_val_interval(self.trainer.val_check_interval, self._world()[2])

    def _build(self, i: int) -> dict[str, PromptPairs]:
        t, name = self.tasks[i], self.names[i]
        try:
            if t.source is None:
                from circuitft.data.tasks import make_pairs

                pairs = make_pairs(
                    t.task,
                    self.tokenizer,
                    t.n_train + t.n_val,
                    self.task_seed(i),
                    self.prepend_bos,
                    **t.params,
                )
            else:
                from circuitft.data.sources import load_pairs

                pairs = load_pairs(t.source, self.tokenizer, task=t.task)
        except DataError as err:
            raise DataError(f"data.tasks[{i}] ({name}): {err}") from None
        pairs.task = name
        n = len(pairs)
        n_val = min(t.n_val, n - 1) if t.source is not None else t.n_val
        n_train = n - n_val if t.source is not None else t.n_train
        if n_train <= 0:
            raise DataError(f"data.tasks[{i}] ({name}): no training rows left after {n_val} validation rows")
        return {
            "train": pairs.subset(range(n_train)),
            "val": pairs.subset(range(n_train, n_train + n_val)) if n_val else pairs.subset([]),
        }

    def check_val_interval(self, every: Any, accumulate: int = 1) -> None:
        """ConfigError when an integer ``val_check_interval`` exceeds the batches of the shortest task."""
        steps = [t.steps for t in self.tasks if t.steps is not None]
        if self._pairs:
            steps = self.task_steps()
        if isinstance(every, int) and steps and every > min(steps) * accumulate:
            raise ConfigError(
                f"trainer.val_check_interval ({every}) is larger than the shortest task "
                f"({min(steps) * accumulate} batches); use at most that, or a fraction such as 0.5"
            )

    def task_pairs(self, name: str, split: Literal["train", "val"] = "val") -> PromptPairs:
        """The PromptPairs of task ``name`` (``split`` "train" or "val"); call after ``setup``."""
        if name not in self._pairs:
            raise ConfigError(f"no task named {name!r} in the stream; tasks: {', '.join(self.names)}")
        return self._pairs[name][split]

    # ---- schedule ---------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int, int]:
        tr = self.trainer
        if tr is None:
            return 0, 1, 1
        return tr.global_rank, tr.world_size, max(1, int(tr.accumulate_grad_batches))

    def task_steps(self) -> list[int]:
        """Optimizer steps of every task (``epochs`` converted with the training rows and batch size)."""
        _, world, accum = self._world()
        out = []
        for t, name in zip(self.tasks, self.names, strict=True):
            if t.steps is not None:
                out.append(int(t.steps))
            else:
                rows = len(self._pairs[name]["train"]) if self._pairs else t.n_train
                out.append(max(1, math.ceil(t.epochs * rows / (self.batch_size * world * accum))))
        return out

    def task_start(self, i: int) -> int:
        """Global optimizer step at which task ``i`` starts."""
        return sum(self.task_steps()[:i])

    def current_task(self) -> int:
        """Index of the task being trained (the trainer's epoch, clipped to the stream)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return min(epoch, len(self.tasks) - 1)

    # ---- loaders ----------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Batches of the current task, starting after those the global step says are done."""
        i = self.current_task()
        rank, world, accum = self._world()
        total = self.task_steps()[i] * accum
        done = (self.trainer.global_step - self.task_start(i)) * accum if self.trainer is not None else 0
        start = min(max(0, done), total)
        ds = _TaskBatches(
            self._pairs[self.names[i]]["train"], i, self.batch_size, self.task_seed(i), rank, world
        )
        return self._loader(ds, _RangeSampler(start, total))

    def val_task_indices(self) -> list[int]:
        """Tasks validated now: seen so far (or all) during fit, every task in validate/test."""
        tr = self.trainer
        fitting = tr is not None and tr.state.fn is not None and tr.state.fn.value == "fit"
        if fitting and self.validate_on == "seen":
            return list(range(self.current_task() + 1))
        return list(range(len(self.tasks)))

    def _eval_loader(self) -> DataLoader:
        rank, world, _ = self._world()
        items = []
        for i in self.val_task_indices():
            val = self._pairs[self.names[i]]["val"]
            for start in range(0, len(val), self.val_batch_size):
                items.append({"task_idx": i, "batch": val.batch(slice(start, start + self.val_batch_size))})
        items = items[rank::world]  # uneven shards are fine: metrics are summed across ranks
        return self._loader(_ListDataset(items), _RangeSampler(0, len(items)))

    def val_dataloader(self) -> DataLoader:
        """Validation batches of the tasks in :meth:`val_task_indices`, each tagged with its task index."""
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        """Same as validation, over every task."""
        return self._eval_loader()

    @staticmethod
    def _loader(ds: Dataset, sampler: _RangeSampler) -> DataLoader:
        # batch_size=None: items are whole batches. Own generator: creating the iterator must not consume
        # the global RNG (a resumed run would otherwise drift from an uninterrupted one).
        return DataLoader(
            ds, batch_size=None, sampler=sampler, collate_fn=_identity, generator=torch.Generator()
        )

    # ---- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stream position (task, step inside it) and the schedule it belongs to."""
        step = self.trainer.global_step if self.trainer is not None else 0
        i = self.current_task()
        return {
            "task_idx": i,
            "step_in_task": step - self.task_start(i),
            "global_step": step,
            "tasks": list(self.names),
            "task_steps": self.task_steps(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check the checkpoint was made for this stream (names and steps); the position follows the step."""
        if state.get("tasks") != self.names or state.get("task_steps") != self.task_steps():
            raise ConfigError(
                f"the checkpoint was made for the task stream {state.get('tasks')} with steps "
                f"{state.get('task_steps')}; this config has {self.names} with steps {self.task_steps()}"
            )
        self._loaded_state = dict(state)


def _identity(x: Any) -> Any:
    return x
