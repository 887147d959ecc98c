"""``circuitft fit|validate|test``: LightningCLI over LoRAModule and TaskStreamDataModule.

Every output of a run lives under ``--trainer.default_root_dir``: ``config.yaml`` (rewritten on resume),
``hparams.yaml`` and TensorBoard events directly in it, checkpoints in ``checkpoints/``. Defaults: a
TensorBoardLogger writing there, a ModelCheckpoint (``checkpoint.*`` options) that keeps ``last.ckpt``, a
checkpoint at the end of every task and every ``checkpoint.every_n_train_steps``, a progress bar naming
the task (:class:`~circuitft.callbacks.progress.TaskProgressBar`), no model summary table (one line instead)
and ``seed_everything: 0``. ``--ckpt_path last`` resumes after any crash (and starts fresh, saying so, when
the run has no checkpoint yet); Ctrl-C prints the command that resumes. The end of a run prints a summary
with the commands that open its report and TensorBoard. Framework noise is silenced by name
(:mod:`circuitft.quiet`; ``CIRCUITFT_VERBOSE=1`` shows it). The CLI class and the run folder's handling are
in :mod:`circuitft.commands.fit_cli`; this module parses nothing itself and turns errors into one line.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence

from jsonargparse import ArgumentError

from circuitft.commands.args import check_config_files, one_line
from circuitft.errors import CircuitftError, ConfigError

__all__ = ["check_config_files", "main"]


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft fit|validate|test``."""
    args = [name, *argv]
    check_config_files(args)  # before the heavy imports: a bad or hostile file fails in a moment
    from circuitft.commands import fit_cli  # Lightning, the model and the callbacks: this command only

    sigint = signal.getsignal(signal.SIGINT)
    try:
        fit_cli.run_cli(args)
    except ArgumentError as err:
        raise ConfigError(one_line(str(err))) from None
    except SystemExit as err:
        if fit_cli.interrupted(argv):
            return 130
        return int(err.code or 0) if isinstance(err.code, int) else 2
    except (ValueError, TypeError) as err:
        cause = _user_error(err)  # e.g. a callback's ConfigError, wrapped by jsonargparse's instantiation
        if cause is None:
            raise
        raise cause from None
    finally:
        fit_cli.release()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C from its graceful shutdown on
    return 0


def _user_error(err: BaseException) -> CircuitftError | None:
    """The first circuitft user error in ``err``'s chain of causes, or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, CircuitftError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1], sys.argv[2:]))
