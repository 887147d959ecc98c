"""LoRA adapters and adapter-only Lightning checkpoints.

A circuitft checkpoint holds the trainable (LoRA) weights and the training state, not the frozen base
weights: :func:`model_from_checkpoint` rebuilds the base model from the spec in ``hyper_parameters``, wraps
it with the same adapter and loads the weights. A checkpoint whose adapter does not fit the model raises a
one-line :class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from circuitft import models  # load_model, wrap_lora on first use: `fit --help` imports no transformers/peft
from circuitft.data.stages import stage_name
from circuitft.dtypes import DTYPES
from circuitft.errors import ConfigError
from circuitft.limits import check_regular_file
from circuitft.models.checkpoint_errors import unreadable_checkpoint

CKPT_KEY = "circuitft"


def __getattr__(name: str) -> Any:
    """``load_model``, ``wrap_lora`` and ``LoadedModel`` as before (they load with :mod:`circuitft.models`)."""
    if name in ("load_model", "wrap_lora", "LoadedModel"):
        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MODEL_KEYS = ("model", "model_seed", "lora_r", "lora_alpha", "target_modules")


def adapter_signature(module: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint must agree on: model spec, adapter settings, and every trainable tensor's shape."""
    hp = dict(getattr(module, "hparams", {}))
    return {
        **{k: hp.get(k) for k in MODEL_KEYS},
        "shapes": {n: list(p.shape) for n, p in module.named_parameters() if p.requires_grad},
    }


def _describe(hp: dict[str, Any]) -> str:
    return f"model {hp.get('model')!r} LoRA r={hp.get('lora_r')} targets={hp.get('target_modules')!r}"


def check_adapter_state(
    checkpoint: dict[str, Any], module: torch.nn.Module, source: str = "the checkpoint"
) -> None:
    """Raise ConfigError unless ``checkpoint``'s adapter tensors match ``module``'s trainable parameters."""
    ours = adapter_signature(module)
    hp = checkpoint.get("hyper_parameters", {}) or {}
    theirs = {n: list(t.shape) for n, t in checkpoint.get("state_dict", {}).items()}
    if set(theirs) != set(ours["shapes"]) or any(theirs[k] != ours["shapes"][k] for k in theirs):
        missing = sorted(set(ours["shapes"]) - set(theirs))
        extra = sorted(set(theirs) - set(ours["shapes"]))
        shape = sorted(k for k in set(theirs) & set(ours["shapes"]) if theirs[k] != ours["shapes"][k])
        detail = (
            f"{len(missing)} adapter tensors missing, {len(extra)} unexpected, {len(shape)} of another shape"
        )
        raise ConfigError(
            f"{source} does not fit this model: it was made for {_describe(hp)}, this run uses "
            f"{_describe(ours)} ({detail})"
        )
    if hp.get("model") is not None and hp.get("model") != ours.get("model"):
        raise ConfigError(
            f"{source} was made for model {hp.get('model')!r}, this run uses {ours.get('model')!r}"
        )


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist")
    check_regular_file(path, f"checkpoint {path}", ConfigError)  # a FIFO or device would block
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling/zip error is a bad file
        raise unreadable_checkpoint(path, err) from None


def check_compatible(path: str | Path, model_args: dict[str, Any], data_args: Any = None) -> None:
    """Before a run starts (before anything is written): refuse a checkpoint made for another model spec,
    adapter settings or task stream (task names, and steps where the config gives them)."""
    ckpt = load_checkpoint_file(path)
    stream = ckpt.get("TaskStreamDataModule")
    tasks = (data_args or {}).get("tasks") if data_args is not None else None
    if isinstance(stream, dict) and tasks:
        names = [stage_name(t) for t in tasks]
        steps = [t.get("steps") for t in tasks]
        old_steps = stream.get("task_steps") or []
        same_steps = len(old_steps) == len(steps) and all(
            s is None or s == o for s, o in zip(steps, old_steps, strict=False)
        )
        if stream.get("tasks") != names or not same_steps:
            raise ConfigError(
                f"checkpoint {path} was made for the task stream {stream.get('tasks')} with steps {old_steps}; "
                f"this config has {names} with steps {steps}"
            )
    hp = ckpt.get("hyper_parameters") or {}
    if "model" not in hp:
        raise ConfigError(f"checkpoint {path} is not a circuitft LoRA checkpoint (no model hyper-parameters)")
    diff = [k for k in MODEL_KEYS if k in model_args and hp.get(k) != model_args[k]]
    plan_keys = {"lora_plan": "uniform", "circuit_lora": None}  # CircuitLoRA; older checkpoints lack them
    diff += [k for k, v in plan_keys.items() if k in model_args and hp.get(k, v) != model_args[k]]
    if diff:
        parts = ", ".join(f"{k}={hp.get(k)!r} (config: {model_args[k]!r})" for k in diff)
        raise ConfigError(f"checkpoint {path} was made with a different model/adapter: {parts}")


def model_from_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> models.LoadedModel:
    """A peft-wrapped model carrying the adapter weights of a circuitft Lightning checkpoint.

    The base model is loaded from the spec stored in the checkpoint's ``hyper_parameters``; ``dtype`` None
    uses the stored dtype. Returns a :class:`LoadedModel` in eval mode.
    """
    ckpt = load_checkpoint_file(path)
    hp = ckpt.get("hyper_parameters") or {}
    if "model" not in hp or "lora_r" not in hp:
        raise ConfigError(f"checkpoint {path} is not a circuitft LoRA checkpoint (no model hyper-parameters)")
    dt = dtype if dtype is not None else DTYPES.get(hp.get("dtype", "float32"), torch.float32)
    loaded = models.load_model(hp["model"], dt, seed=int(hp.get("model_seed", 0)))
    plan = (ckpt.get(CKPT_KEY) or {}).get("lora_plan")  # CircuitLoRA: per-module ranks and alphas
    r, alpha = (plan["r"], plan["alpha"]) if plan else (int(hp["lora_r"]), hp.get("lora_alpha"))
    peft_model = models.wrap_lora(
        loaded.model,
        int(r),
        alpha,
        0.0,
        hp.get("target_modules", "auto"),
        rank_pattern=plan and plan["rank_pattern"],
        alpha_pattern=plan and plan["alpha_pattern"],
    )
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith(prefix)}
    ours = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    bad = sorted(set(state) ^ set(ours)) or sorted(k for k in state if state[k].shape != ours[k].shape)
    if bad:
        raise ConfigError(
            f"checkpoint {path}: its adapter does not fit {hp['model']!r} with LoRA r={hp['lora_r']} "
            f"(first mismatching tensor: {bad[0]})"
        )
    with torch.no_grad():
        for k, t in state.items():
            ours[k].copy_(t.to(ours[k].dtype))
    peft_model.eval()
    for p in peft_model.parameters():
        p.requires_grad_(False)
    return models.LoadedModel(peft_model, loaded.tokenizer, loaded.spec, loaded.tokenizer_dir)
