"""Helpers for model tests (imported by tests/models/conftest.py and the test modules)."""

from __future__ import annotations

import torch

LORA_TARGETS = {
    "tiny-gpt2": ["c_attn", "c_proj", "c_fc"],
    "tiny-llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "tiny-qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "tiny-neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def add_lora(model: torch.nn.Module, targets: list[str], seed: int = 0, r: int = 4):
    """Wrap ``model`` in a peft LoRA adapter on ``targets`` with random non-zero ``lora_B`` weights."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.0)
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return peft_model


def random_ids(vocab_size: int, batch: int = 3, length: int = 10, seed: int = 0) -> torch.Tensor:
    """Random token ids that avoid the four special tokens."""
    return torch.randint(4, vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))
