"""Fixtures for model tests: tiny models wrapped in a peft LoRA adapter with non-zero weights."""

from __future__ import annotations

import pytest
from model_helpers import LORA_TARGETS, add_lora


@pytest.fixture
def lora_tiny(tiny):
    """Factory: ``lora_tiny("tiny-llama")`` -> (LoadedModel, PeftModel with a non-zero adapter)."""

    def make(spec: str, seed: int = 0):
        loaded = tiny(spec)
        return loaded, add_lora(loaded.model, LORA_TARGETS[spec], seed=seed)

    return make
