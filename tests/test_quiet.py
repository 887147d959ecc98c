"""Named framework noise: the filter drops exactly the named lines; CIRCUITFT_VERBOSE keeps everything."""

from __future__ import annotations

import logging

from circuitft import quiet


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord(
        "lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, msg, (), None
    )


def test_named_lines_only():
    f = quiet.NamedLines(quiet.INFO_LINES)
    assert not f.filter(_record("GPU available: False, used: False"))
    assert not f.filter(_record("TPU available: False, using: 0 TPU cores"))
    assert not f.filter(
        _record("💡 Tip: For seamless cloud logging and experiment tracking, try installing ...")
    )
    assert f.filter(_record("\nDetected KeyboardInterrupt, attempting graceful shutdown ..."))
    assert f.filter(_record("Restoring states from the checkpoint path at runs/x/last.ckpt"))


def test_verbose_env_keeps_everything(monkeypatch):
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    quiet.quiet_framework()
    assert logger.filters == []
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")
    quiet.quiet_framework()
    quiet.quiet_framework()  # once, however often it is called
    assert [type(f) for f in logger.filters] == [quiet.NamedLines]


def test_seed_and_resume_lines_are_named(monkeypatch):
    """The issue's chatter: "Seed set to 0" (Lightning's seed logger) and a resume's "Restoring states ..."
    are dropped by the installed filters, and kept with CIRCUITFT_VERBOSE=1."""
    seed = logging.getLogger("lightning.fabric.utilities.seed")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    for logger in (seed, rank_zero):
        monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")
    quiet.quiet_framework()
    as_seed = logging.LogRecord(seed.name, logging.INFO, __file__, 1, "Seed set to 0", (), None)
    assert not seed.filter(as_seed)
    assert not seed.filter(
        logging.LogRecord(seed.name, logging.INFO, __file__, 1, "[rank: 0] Seed set to 0", (), None)
    )
    assert not rank_zero.filter(_record("Restoring states from the checkpoint path at runs/x/last.ckpt"))
    assert rank_zero.filter(_record("\nDetected KeyboardInterrupt, attempting graceful shutdown ..."))
    for logger in (seed, rank_zero):
        monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    quiet.quiet_framework()
    assert seed.filter(as_seed)
