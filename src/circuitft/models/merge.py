"""The analysis form of a model: a merged, frozen copy that attribution can hook without touching training."""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel


def merged_copy(model: torch.nn.Module, dtype: torch.dtype | None = torch.float32) -> PreTrainedModel:
    """A deep copy of ``model`` with any peft LoRA adapter merged in, in eval mode, parameters frozen.

    The training model is never modified (booting TransformerLens or hooking a live peft model corrupts it
    or gives wrong logits). ``dtype`` None keeps the model's dtype.
    """
    clone = copy.deepcopy(model)
    if dtype is not None:  # cast first, so a bf16 adapter is merged in float32 precision
        clone = clone.to(dtype)
    if hasattr(clone, "merge_and_unload"):  # peft.PeftModel
        clone = clone.merge_and_unload()  # keep the returned base model: peft unloads in place only partly
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone
