"""dtype names as configs and command lines write them (``float32``, ``bfloat16``, ...): the one table."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
MODEL_DTYPES = ("float32", "bfloat16", "float16")  # the weights of a model that is trained
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # Lightning precision -> autocast


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16`` (the inverse of :data:`DTYPES`)."""
    return str(dtype).removeprefix("torch.")
