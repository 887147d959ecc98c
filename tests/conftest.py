"""Shared fixtures: offline mode, an isolated cache folder, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The user's real cache (where the embedded model is converted once); tests that need SmolLM2 use it.
DEFAULT_CACHE = Path(os.environ.get("CIRCUITFT_CACHE", Path.home() / ".cache" / "circuitft")).expanduser()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run far faster on one thread than on two contended ones (CI has 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tiny models and tokenizers are cached in a per-session folder, not in the user's cache."""
    old = os.environ.get("CIRCUITFT_CACHE")
    os.environ["CIRCUITFT_CACHE"] = str(tmp_path_factory.mktemp("circuitft-cache"))
    yield
    if old is None:
        os.environ.pop("CIRCUITFT_CACHE", None)
    else:
        os.environ["CIRCUITFT_CACHE"] = old


@pytest.fixture
def default_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Use the user's real cache folder (for tests of the embedded SmolLM2 model)."""
    monkeypatch.setenv("CIRCUITFT_CACHE", str(DEFAULT_CACHE))
    return DEFAULT_CACHE


@pytest.fixture(scope="session")
def tiny():
    """Factory: ``tiny("tiny-gpt2")`` -> LoadedModel (fresh model each call, seeded weights)."""
    from circuitft.models import load_model

    return lambda name, seed=0: load_model(name, seed=seed)
