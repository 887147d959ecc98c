""":class:`CircuitftCLI`: LightningCLI with circuitft's defaults and checks, and the run folder's lock, marker
and resume point around it (``circuitft fit|validate|test`` and ``circuitlora plan`` build it).

Imported only by those commands (Lightning and the callbacks load with it), never by ``circuitft --help``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.trainer.states import TrainerStatus

from circuitft.callbacks import CircuitCallback  # noqa: F401 - listed in --help, found by its short name
from circuitft.callbacks.progress import TaskProgressBar
from circuitft.commands import fit_messages
from circuitft.data.stream import TaskStreamDataModule
from circuitft.errors import ConfigError
from circuitft.models.checkpoint import check_compatible, load_checkpoint_file
from circuitft.owned import check_owned, kind_of, mark
from circuitft.quiet import quiet_framework
from circuitft.runfolder import RunFolder
from circuitft.runlock import RunLock
from circuitft.training.module import LoRAModule
from circuitft.training.task_checkpoint import TaskCheckpoint

TB_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"
DEFAULT_ROOT = "runs/default"
PLAN_OUTPUT_HELP = "where the plan JSON goes (default: circuit_lora.json in trainer.default_root_dir)"
LOCKS: list[Any] = []  # the run folder's lock of the fit in progress (released by the command)
RUNNING: list[Any] = []  # the CLI of the fit in progress (for the interrupt message)


class CircuitftCLI(LightningCLI):
    """LightningCLI with circuitft defaults, an always-on ModelCheckpoint and early checkpoint checks.

    ``command``: the subcommand being run (only its parser is built; None builds all four); ``argv``: the
    command line, echoed by the end-of-run summary."""

    def __init__(
        self, *args: Any, command: str | None = None, argv: Sequence[str] = (), **kwargs: Any
    ) -> None:
        self.command, self.argv = command, list(argv)
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        # only the command being run: building the parsers of the other three costs 3/4 of `--help`
        every = LightningCLI.subcommands()
        return {k: v for k, v in every.items() if self.command is None or k == self.command}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": -1,
                "checkpoint.filename": "step{step:06d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def _parse_ckpt_path(self) -> None:
        # Overrides a PRIVATE LightningCLI method, called by LightningCLI.__init__ right after parsing (checked
        # against lightning 2.6.6). Lightning's version silently replaces the model config by the hyper-
        # parameters saved in the checkpoint; there is no public switch to turn that off, and circuitft must
        # refuse a mismatch instead (check_compatible's one-line error). Pinned by
        # tests/commands/test_train.py::test_private_lightning_override_still_exists: a Lightning that renames
        # or removes it fails that test rather than silently bringing the replacement back.
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        if not ckpt:
            return
        path = resolve_checkpoint(ckpt, cfg)
        if path is not None:
            check_compatible(path, dict(cfg.model), cfg.get("data"))

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        # circuitft's progress bar unless the config has a bar of its own or turns bars off
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(cb, ProgressBar) for cb in callbacks
        ):
            kwargs["callbacks"] = [*callbacks, TaskProgressBar()]
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        # before the trainer touches the run folder (the logger writes on any failure)
        self.datamodule.check_val_interval(
            self.trainer.val_check_interval, int(self.trainer.accumulate_grad_batches)
        )
        for cb in self.trainer.callbacks:
            if hasattr(cb, "check_stream"):  # CircuitCallback's task options against the stream
                cb.check_stream(list(self.datamodule.names))
        self._check_kept_rows()
        mark_run_folder(self.trainer.default_root_dir)
        RUNNING.append(self)
        if rank_zero():
            spec = getattr(self.model, "spec", type(self.model).__name__)
            trained = list(self.datamodule.names)[: getattr(self.datamodule, "n_trained", None)]
            print(fit_messages.model_line(spec, self.model, trained), flush=True)
            if self._resume is not None:
                print(self._resume.line(), flush=True)

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        print(self._summary(), flush=True)

    def _summary(self) -> str:
        tr, dm = self.trainer, self.datamodule
        names = list(getattr(dm, "names", []))[: getattr(dm, "n_trained", None)]  # not data.analysis_tasks
        metrics = tr.callback_metrics
        val = {t: float(metrics[f"val/{t}/acc"]) for t in names if f"val/{t}/acc" in metrics}
        final: dict[str, float] = {}
        circuits = None
        for cb in tr.callbacks:
            if hasattr(cb, "final") and hasattr(cb, "folder"):  # the CircuitCallback
                final, circuits = dict(cb.final), cb.folder  # (trainer.log_dir is a DDP collective)
        checkpoints = getattr(tr.checkpoint_callback, "dirpath", None)
        total = sum(dm.task_steps()) if hasattr(dm, "task_steps") else 0
        rows = {}
        if hasattr(dm, "task_pairs"):
            n_ex = next((cb.n_examples for cb in tr.callbacks if hasattr(cb, "n_examples")), None)
            for t in names:
                n_val = len(dm.task_pairs(t, "val"))
                rows[t] = (n_val, min(n_val, n_ex) if n_ex else None)
        return fit_messages.summary(
            Path(tr.default_root_dir),
            names,
            tr.global_step,
            total,
            val,
            final,
            circuits,
            Path(checkpoints) if checkpoints else None,
            self.argv,
            rows,
        )

    def before_validate(self) -> None:
        self._check_kept_rows()

    def before_test(self) -> None:
        self._check_kept_rows()

    def after_test(self) -> None:
        # accuracies on fewer than 20 rows are flagged where they are printed (Lightning's table above)
        dm, metrics = self.datamodule, self.trainer.callback_metrics
        if not self.trainer.is_global_zero or not hasattr(dm, "task_pairs"):
            return
        acc = {t: float(metrics[f"test/{t}/acc"]) for t in dm.names if f"test/{t}/acc" in metrics}
        rows = {t: len(dm.task_pairs(t, "test")) for t in acc}
        for line in fit_messages.few_rows(acc, rows, "test"):
            print(line, file=sys.stderr, flush=True)

    def _check_kept_rows(self) -> None:
        # a resumed run (or validate/test of a run) must use the rows kept in <run>/data/
        dm = self.datamodule
        if hasattr(dm, "check_rows"):
            dm.tokenizer = dm.tokenizer or getattr(self.model, "tokenizer", None)
            resuming = self.subcommand != "fit" or bool(self.config[self.subcommand].get("ckpt_path"))
            dm.check_rows(self.trainer.default_root_dir, resuming)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg.trainer.get("default_root_dir") or DEFAULT_ROOT
        self._resume: fit_messages.Resume | None = None
        if self.subcommand == "fit":
            own_run_folder(root)  # the lock, and config.yaml only in a folder circuitft owns
            if cfg.get("ckpt_path") == "last" and resolve_checkpoint("last", cfg) is None:
                folder = checkpoint_folder(cfg)
                others = sorted(folder.glob("*.ckpt"))
                if others:
                    raise ConfigError(
                        f"--ckpt_path last: {folder} holds no last*.ckpt ({others[0].name}, ...); resume "
                        f"from one of them with --ckpt_path {others[-1]}"
                    )
                if rank_zero():
                    print(fit_messages.fresh_start_line(folder), flush=True)
                cfg.ckpt_path = None
            if cfg.get("ckpt_path"):
                self._resume = resume_info(cfg)
        if self.subcommand == "fit" and not cfg.get("ckpt_path"):
            old = sorted(RunFolder(root).checkpoints.glob("*.ckpt"))
            if old:
                raise ConfigError(
                    f"{root} already holds a run ({old[0].name}, ...): resume it with --ckpt_path last, "
                    "or start fresh in another --trainer.default_root_dir"
                )
        tasks = cfg.get("data", {}).get("tasks") if cfg.get("data") else None
        if tasks and cfg.trainer.get("max_epochs") is None:
            cfg.trainer.max_epochs = len(tasks)  # one epoch per task
        # Everything logged under the checkpoint's step S (training scalars, circuits, validation) is
        # about the weights saved at S; the resumed run logs from S + 1 on.
        purge = self._resume.step + 1 if self._resume is not None else None
        if self._resume is not None and self._resume.steps and self._resume.step >= self._resume.total:
            purge = None  # a finished run: nothing is trained or logged again, so nothing is purged
        loggers = cfg.trainer.get("logger")
        for lg in loggers if isinstance(loggers, list) else [loggers]:
            init = getattr(lg, "init_args", None)
            if init is not None and getattr(lg, "class_path", "").endswith("TensorBoardLogger"):
                if not init.get("save_dir"):
                    init.save_dir = root
                if purge is not None and init.get("purge_step") is None:
                    # SummaryWriter(purge_step=...): TensorBoard drops what the interrupted run logged
                    # after the checkpoint's step; the resumed run logs it again, once.
                    init.purge_step = purge


def trainer_defaults() -> dict[str, Any]:
    """Trainer defaults of ``circuitft fit`` (a config or the command line overrides each)."""
    return {
        "default_root_dir": DEFAULT_ROOT,
        "logger": {
            "class_path": TB_LOGGER,
            "init_args": {"save_dir": "", "name": "", "version": "", "default_hp_metric": False},
        },
        "num_sanity_val_steps": 0,
        "use_distributed_sampler": False,  # the task stream shards its batches by rank itself
        "reload_dataloaders_every_n_epochs": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": True,  # circuitft's TaskProgressBar (see CircuitftCLI.instantiate_trainer)
        "enable_model_summary": False,  # the table (with "Total FLOPs: 0"); fit prints one line instead
    }


def run_cli(argv: Sequence[str]) -> Any:
    """Run LightningCLI on ``argv`` (subcommand first, its config files already checked); returns the CLI."""
    quiet_framework()
    extra: dict[str, Any] = {}
    if argv and argv[0] != "fit":
        extra["save_config_callback"] = None  # validate/test must not rewrite the run's config.yaml
    return CircuitftCLI(
        LoRAModule,
        TaskStreamDataModule,
        args=list(argv),
        command=argv[0] if argv else None,
        argv=list(argv[1:]),
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": True, "exit_on_error": False},
        auto_configure_optimizers=False,
        **extra,
    )


class PlanCLI(CircuitftCLI):
    """fit's parser (jsonargparse, through LightningCLI) with ``circuitlora plan``'s own ``--output``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--output", type=Optional[Path], default=None, help=PLAN_OUTPUT_HELP)  # noqa: UP045


def plan_cli(argv: Sequence[str]) -> PlanCLI:
    """``circuitlora plan``'s CLI on ``argv`` (fit's options and ``--output``), built but not run: its
    ``model``, ``datamodule`` and ``trainer`` are ready, ``config.output`` holds ``--output``."""
    return PlanCLI(
        LoRAModule,
        TaskStreamDataModule,
        args=[*argv, "--model.lora_plan", "circuit"],
        run=False,
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_callback=None,
        parser_kwargs={"default_env": True, "exit_on_error": False},
        auto_configure_optimizers=False,
    )


def interrupted(argv: Sequence[str]) -> bool:
    """After Lightning's graceful shutdown on Ctrl-C: print the command that resumes (rank 0), True."""
    for cli in RUNNING:
        trainer = cli.trainer
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            if trainer.is_global_zero:
                dm = cli.datamodule
                total = sum(dm.task_steps()) if hasattr(dm, "task_steps") else 0
                print(
                    fit_messages.interrupt_line(trainer.global_step, total, argv), file=sys.stderr, flush=True
                )
            return True
    return False


def release() -> None:
    """Release the run folder's lock and forget the fit in progress (at the end of the command)."""
    while LOCKS:
        LOCKS.pop().release()
    RUNNING.clear()


# ---- the run folder around the CLI ---------------------------------------------------------------------
def rank_zero() -> bool:
    """Whether this is rank 0 / the launching process (other DDP ranks are its children)."""
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank == "0" and os.environ.get("NODE_RANK", "0") == "0"


def own_run_folder(root: str) -> None:
    """Refuse a run folder holding files circuitft did not write (its config.yaml would replace yours), then
    take its lock (before the checks after it: two fits cannot both pass them). Rank 0 only."""
    if not rank_zero():
        return
    check_owned(root, "run", "--trainer.default_root_dir", what="write its config.yaml and checkpoints into")
    LOCKS.append(RunLock(root, "fit", key="--trainer.default_root_dir").acquire())


def mark_run_folder(root: str) -> None:
    """Mark the run folder as circuitft's (after every check passed: bad input writes nothing)."""
    if rank_zero() and kind_of(root) != "run":
        mark(root, "run")


def checkpoint_folder(cfg: Any) -> Path:
    """The run's checkpoint folder (``checkpoint.dirpath`` or ``<default_root_dir>/checkpoints``)."""
    dirpath = cfg.get("checkpoint", {}).get("dirpath") if cfg.get("checkpoint") else None
    return (
        Path(dirpath)
        if dirpath
        else RunFolder(cfg.trainer.get("default_root_dir") or DEFAULT_ROOT).checkpoints
    )


def resolve_checkpoint(ckpt_path: str, cfg: Any) -> Path | None:
    """The file ``--ckpt_path`` names (``last``: newest ``last*.ckpt`` in the checkpoint folder), or None."""
    if ckpt_path in ("best", "hpc", "registry"):
        return None
    if ckpt_path == "last":
        found = sorted(checkpoint_folder(cfg).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
    return path


def resume_info(cfg: Any) -> fit_messages.Resume | None:
    """Where a fit resumes (:class:`~circuitft.commands.fit_messages.Resume`), or None (no file)."""
    path = resolve_checkpoint(cfg.ckpt_path, cfg)
    if path is None:
        return None
    checkpoint = load_checkpoint_file(path)
    stream = checkpoint.get("TaskStreamDataModule") or {}
    stream = stream if isinstance(stream, dict) else {}
    steps = [int(n) for n in stream.get("task_steps") or []]
    return fit_messages.Resume(
        path, int(checkpoint.get("global_step", 0)), list(stream.get("tasks") or []), steps
    )
