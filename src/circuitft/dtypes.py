"""dtype names as configs and command lines write them (``float32``, ``bfloat16``, ...): the one table; and
``--device`` names (``cpu``, ``cuda``, ``cuda:N``, ``auto``) as a ``torch.device`` (:func:`parse_device`)."""

from __future__ import annotations

import torch

from circuitft.errors import ConfigError

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


def parse_device(text: str) -> torch.device:
    """``--device`` as a ``torch.device`` (``auto``: CUDA when available); a one-line ConfigError for a name
    that is not a device or a CUDA device on a machine without CUDA."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"--device {text!r} is not a device (cpu, cuda, cuda:N, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {text}: CUDA is not available on this machine")
    return device
