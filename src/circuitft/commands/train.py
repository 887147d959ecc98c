"""``circuitft fit|validate|test``: LightningCLI over LoRAModule and TaskStreamDataModule.

Every output of a run lives under ``--trainer.default_root_dir``: ``config.yaml`` (rewritten on resume),
``hparams.yaml`` and TensorBoard events directly in it, checkpoints in ``checkpoints/``. Defaults: a
TensorBoardLogger writing there, a ModelCheckpoint (``checkpoint.*`` options) that keeps ``last.ckpt``, a
checkpoint at the end of every task and every ``checkpoint.every_n_train_steps``, a progress bar naming
the task (:class:`~circuitft.callbacks.progress.TaskProgressBar`), no model summary table (one line instead)
and ``seed_everything: 0``. ``--ckpt_path last`` resumes after any crash (and starts fresh, saying so, when
the run has no checkpoint yet); Ctrl-C prints the command that resumes. The end of a run prints a summary
with the commands that open its report and TensorBoard. Framework noise is silenced by name
(:mod:`circuitft.quiet`; ``CIRCUITFT_VERBOSE=1`` shows it).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitft.errors import CircuitftError, ConfigError

TB_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"
DEFAULT_ROOT = "runs/default"


def _config_paths(argv: Sequence[str]) -> list[str]:
    paths = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config_files(argv: Sequence[str]) -> None:
    """One-line errors for a missing, unreadable, non-regular, non-mapping or alias-bomb ``--config`` file,
    and for an option value whose YAML expands beyond the limit (before jsonargparse sees any of it)."""
    from circuitft.safeyaml import check_yaml, read_yaml_file

    paths = _config_paths(argv)
    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"config file {p} does not exist")
        data = read_yaml_file(p, f"config file {p}")
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping of options, got {type(data).__name__}")
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if "&" in value and "*" in value and value not in paths:  # anchors and aliases: a possible bomb
            check_yaml(
                value, f"argument {i + 1} ({value[:40]}...)" if len(value) > 40 else f"argument {value}"
            )


def _cli_class(argv: Sequence[str] = (), command: str | None = None) -> type:
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from circuitft.callbacks import CircuitCallback  # noqa: F401 - listed in --help, found by its short name
    from circuitft.commands import fit_messages
    from circuitft.models.checkpoint import check_compatible
    from circuitft.training.task_checkpoint import TaskCheckpoint

    class CircuitftCLI(LightningCLI):
        """LightningCLI with circuitft defaults, an always-on ModelCheckpoint and early checkpoint checks."""

        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            # only the command being run: building the parsers of the other three costs 3/4 of `--help`
            every = LightningCLI.subcommands()
            return {k: v for k, v in every.items() if command is None or k == command}

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
            # Lightning would silently replace the model config by the checkpoint's; refuse a mismatch instead.
            # Private LightningCLI method with no public switch (checked against lightning 2.6.6).
            sub = self.config.get("subcommand")
            if not sub:
                return
            cfg = self.config[sub]
            ckpt = cfg.get("ckpt_path")
            if not ckpt:
                return
            path = _resolve_ckpt(ckpt, cfg)
            if path is not None:
                check_compatible(path, dict(cfg.model), cfg.get("data"))

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            # circuitft's progress bar unless the config has a bar of its own or turns bars off
            from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

            from circuitft.callbacks.progress import TaskProgressBar

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
            _mark_run_folder(self.trainer.default_root_dir)
            _RUNNING.append(self)
            if _rank_zero():
                spec = getattr(self.model, "spec", type(self.model).__name__)
                print(fit_messages.model_line(spec, self.model, list(self.datamodule.names)), flush=True)
                if self._resume is not None:
                    print(self._resume.line(), flush=True)

        def after_fit(self) -> None:
            if not self.trainer.is_global_zero:
                return
            print(self._summary(), flush=True)

        def _summary(self) -> str:
            tr, dm = self.trainer, self.datamodule
            names = list(getattr(dm, "names", []))
            metrics = tr.callback_metrics
            val = {t: float(metrics[f"val/{t}/acc"]) for t in names if f"val/{t}/acc" in metrics}
            final: dict[str, float] = {}
            circuits = None
            for cb in tr.callbacks:
                if hasattr(cb, "final") and hasattr(cb, "folder"):  # the CircuitCallback
                    final, circuits = dict(cb.final), cb.folder  # (trainer.log_dir is a DDP collective)
            ckpt = getattr(tr.checkpoint_callback, "dirpath", None)
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
                Path(ckpt) if ckpt else None,
                argv,
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
                _own_run_folder(root)  # the lock, and config.yaml only in a folder circuitft owns
                if cfg.get("ckpt_path") == "last" and _resolve_ckpt("last", cfg) is None:
                    folder = _checkpoint_folder(cfg)
                    others = sorted(folder.glob("*.ckpt"))
                    if others:
                        raise ConfigError(
                            f"--ckpt_path last: {folder} holds no last*.ckpt ({others[0].name}, ...); resume "
                            f"from one of them with --ckpt_path {others[-1]}"
                        )
                    if _rank_zero():
                        print(fit_messages.fresh_start_line(folder), flush=True)
                    cfg.ckpt_path = None
                if cfg.get("ckpt_path"):
                    self._resume = _resume_info(cfg)
            if self.subcommand == "fit" and not cfg.get("ckpt_path"):
                old = sorted((Path(root) / "checkpoints").glob("*.ckpt"))
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

    return CircuitftCLI


_LOCKS: list[Any] = []
_RUNNING: list[Any] = []  # the CLI of the fit in progress (for the interrupt message)


def _rank_zero() -> bool:
    """Whether this is rank 0 / the launching process (other DDP ranks are its children)."""
    import os

    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _lock_run_folder(root: str) -> None:
    """Take the run folder's lock (rank 0 / the launching process only; other DDP ranks are its children)."""
    from circuitft.runlock import RunLock

    if not _rank_zero():
        return
    _LOCKS.append(RunLock(root, "fit", key="--trainer.default_root_dir").acquire())


def _own_run_folder(root: str) -> None:
    """Refuse a run folder holding files circuitft did not write (its config.yaml would replace yours), then
    take its lock (before the checks after it: two fits cannot both pass them)."""
    from circuitft.owned import check_owned

    if not _rank_zero():
        return
    check_owned(root, "run", "--trainer.default_root_dir", what="write its config.yaml and checkpoints into")
    _lock_run_folder(root)


def _mark_run_folder(root: str) -> None:
    """Mark the run folder as circuitft's (after every check passed: bad input writes nothing)."""
    from circuitft.owned import kind_of, mark

    if _rank_zero() and kind_of(root) != "run":
        mark(root, "run")


def _checkpoint_folder(cfg: Any) -> Path:
    """The run's checkpoint folder (``checkpoint.dirpath`` or ``<default_root_dir>/checkpoints``)."""
    dirpath = cfg.get("checkpoint", {}).get("dirpath") if cfg.get("checkpoint") else None
    return Path(dirpath or Path(cfg.trainer.get("default_root_dir") or DEFAULT_ROOT) / "checkpoints")


def _resolve_ckpt(ckpt: str, cfg: Any) -> Path | None:
    """The file ``--ckpt_path`` names (``last``: newest ``last*.ckpt`` in the checkpoint folder), or None."""
    if ckpt in ("best", "hpc", "registry"):
        return None
    if ckpt == "last":
        found = sorted(_checkpoint_folder(cfg).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None
    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {ckpt}: no such checkpoint file")
    return path


def _resume_info(cfg: Any) -> Any:
    """Where a fit resumes (:class:`~circuitft.commands.fit_messages.Resume`), or None (no file)."""
    from circuitft.commands.fit_messages import Resume
    from circuitft.models.checkpoint import load_checkpoint_file

    path = _resolve_ckpt(cfg.ckpt_path, cfg)
    if path is None:
        return None
    ckpt = load_checkpoint_file(path)
    stream = ckpt.get("TaskStreamDataModule") or {}
    stream = stream if isinstance(stream, dict) else {}
    steps = [int(n) for n in stream.get("task_steps") or []]
    return Resume(path, int(ckpt.get("global_step", 0)), list(stream.get("tasks") or []), steps)


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
    """Run LightningCLI on ``argv`` (subcommand first); returns the CLI object."""
    check_config_files(argv)  # before the heavy imports: a bad or hostile file fails in a moment
    from circuitft.data.stream import TaskStreamDataModule
    from circuitft.quiet import quiet_framework
    from circuitft.training.module import LoRAModule

    quiet_framework()
    cls = _cli_class(list(argv[1:]), argv[0] if argv else None)
    extra: dict[str, Any] = {}
    if argv and argv[0] != "fit":
        extra["save_config_callback"] = None  # validate/test must not rewrite the run's config.yaml
    return cls(
        LoRAModule,
        TaskStreamDataModule,
        args=list(argv),
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": True, "exit_on_error": False},
        auto_configure_optimizers=False,
        **extra,
    )


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft fit|validate|test``."""
    from jsonargparse import ArgumentError

    args = [name, *argv]
    sigint = signal.getsignal(signal.SIGINT)
    try:
        run_cli(args)
    except ArgumentError as err:
        raise ConfigError(_one_line(str(err))) from None
    except SystemExit as err:
        if _interrupted(argv):
            return 130
        return int(err.code or 0) if isinstance(err.code, int) else 2
    except (ValueError, TypeError) as err:
        cause = _user_error(err)  # e.g. a callback's ConfigError, wrapped by jsonargparse's instantiation
        if cause is None:
            raise
        raise cause from None
    finally:
        while _LOCKS:
            _LOCKS.pop().release()
        _RUNNING.clear()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C from its graceful shutdown on
    return 0


def _interrupted(argv: Sequence[str]) -> bool:
    """After Lightning's graceful shutdown on Ctrl-C: print the command that resumes (rank 0), True."""
    from lightning.pytorch.trainer.states import TrainerStatus

    from circuitft.commands.fit_messages import interrupt_line

    for cli in _RUNNING:
        trainer = cli.trainer
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            if trainer.is_global_zero:
                dm = cli.datamodule
                total = sum(dm.task_steps()) if hasattr(dm, "task_steps") else 0
                print(interrupt_line(trainer.global_step, total, argv), file=sys.stderr, flush=True)
            return True
    return False


def _user_error(err: BaseException) -> CircuitftError | None:
    """The first circuitft user error in ``err``'s chain of causes, or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, CircuitftError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def _one_line(msg: str) -> str:
    """jsonargparse's (possibly nested, multi-line) message as one line that keeps the cause."""
    lines = [ln.strip().lstrip("- ").strip() for ln in msg.strip().splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    joined = " ".join(lines)
    if len(joined) <= 400:
        return joined
    return f"{lines[0][:200]} ... {lines[-1][:190]}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1], sys.argv[2:]))
