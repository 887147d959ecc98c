"""merged_copy: the merged model computes what the peft model computes, and the original is untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from model_helpers import random_ids

from circuitft.models.merge import merged_copy


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_merged_copy_matches_peft_logits(lora_tiny, spec):
    loaded, peft_model = lora_tiny(spec)
    ids = random_ids(len(loaded.tokenizer))
    with torch.no_grad():
        expected = peft_model(ids).logits
        base = peft_model.get_base_model()
        with peft_model.disable_adapter():
            without_lora = base(ids).logits
    merged = merged_copy(peft_model)
    with torch.no_grad():
        got = merged(ids).logits
    assert (expected - without_lora).abs().max() > 0.05  # the adapter matters, so the check means something
    torch.testing.assert_close(got, expected, atol=5e-5, rtol=1e-5)  # merged weights round differently
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert not merged.training
    assert not any(p.requires_grad for p in merged.parameters())


def test_merged_copy_leaves_original_untouched(lora_tiny):
    loaded, peft_model = lora_tiny("tiny-llama")
    peft_model.train()
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    merged = merged_copy(peft_model)
    after = peft_model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n for n, p in peft_model.named_parameters() if p.requires_grad} == trainable
    assert trainable and all("lora_" in n for n in trainable)
    assert peft_model.training
    # No storage is shared: changing the merged copy cannot reach the training model.
    ptrs = {p.data_ptr() for p in peft_model.parameters()}
    assert not ptrs & {p.data_ptr() for p in merged.parameters()}
    # The training model still trains and deep-copies.
    ids = random_ids(len(loaded.tokenizer))
    peft_model(ids, labels=ids).loss.backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if n in trainable)
    copy.deepcopy(peft_model)


def test_merged_copy_dtype(tiny):
    model = tiny("tiny-gpt2").model.to(torch.bfloat16)
    assert next(merged_copy(model).parameters()).dtype == torch.float32
    assert next(merged_copy(model, dtype=None).parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.bfloat16


def test_merged_copy_of_plain_model_is_independent_copy(tiny):
    model = tiny("tiny-qwen2").model
    ids = random_ids(model.config.vocab_size)
    merged = merged_copy(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, atol=0, rtol=0)
        next(merged.parameters()).add_(1.0)
    assert not torch.equal(next(merged.parameters()), next(model.parameters()))
