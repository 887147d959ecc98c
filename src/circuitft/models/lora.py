"""A fresh peft LoRA adapter on a Hugging Face model, with the target modules of its family."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from circuitft.errors import ConfigError
from circuitft.models.architectures import ARCHITECTURES


def default_targets(model: PreTrainedModel) -> list[str] | str:
    """LoRA target modules for ``model``'s family, from the architecture table
    (:data:`circuitft.models.architectures.ARCHITECTURES`: fused QKV for GPT-NeoX, attention+MLP for GPT-2,
    attention for Mixtral's experts, ...); ``all-linear`` for a family not in the table."""
    spec = ARCHITECTURES.get(getattr(model.config, "model_type", ""))
    if spec is None or isinstance(spec.lora_targets, str):
        return "all-linear"
    return list(spec.lora_targets)


def wrap_lora(
    model: PreTrainedModel,
    r: int,
    alpha: float | None,
    dropout: float,
    target_modules: str | list[str] = "auto",
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
) -> PeftModel:
    """``model`` with a fresh peft LoRA adapter (base weights frozen); bad settings raise ConfigError.

    ``rank_pattern`` / ``alpha_pattern`` (peft's, keyed by module name) override ``r`` / ``alpha`` per module
    (CircuitLoRA plans, :mod:`circuitft.circuitlora`).
    """
    if r <= 0:
        raise ConfigError(f"model.lora_r must be positive, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.lora_dropout must be in [0, 1), got {dropout}")
    targets = default_targets(model) if target_modules == "auto" else target_modules
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2 * r,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        fan_in_fan_out=_conv1d(model),
        rank_pattern=dict(rank_pattern or {}),
        alpha_pattern=dict(alpha_pattern or {}),
    )
    try:
        return get_peft_model(model, cfg)
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"model.target_modules {target_modules!r} do not fit the model: {first}") from None


def _conv1d(model: PreTrainedModel) -> bool:
    spec = ARCHITECTURES.get(getattr(model.config, "model_type", ""))
    return spec.conv1d if spec is not None else False
