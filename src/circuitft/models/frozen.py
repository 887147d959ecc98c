"""The merged, frozen model for analysis, from a spec, a peft adapter folder or a training checkpoint.

:func:`load_analysis_model` returns a :class:`~circuitft.models.loading.LoadedModel` whose ``model`` is a
merged, frozen float32 copy (the adapter folded into the base weights), ready for attribution and evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from circuitft.errors import ConfigError
from circuitft.models.checkpoint import model_from_checkpoint
from circuitft.models.loading import LoadedModel, hf_bars_off, load_model
from circuitft.models.merge import merged_copy


def load_analysis_model(
    spec: str | None = None,
    *,
    adapter: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Base model ``spec`` plus an optional peft ``adapter`` folder or circuitft training ``checkpoint``.
    ``progress=False`` hides the Hugging Face loading bars (``circuit --quiet``).

    A checkpoint names its own model, so ``spec`` may be omitted with it (given, it must agree). Errors are
    one-line :class:`~circuitft.errors.CircuitftError`s naming the argument.
    """
    if adapter is not None and checkpoint is not None:
        raise ConfigError("give an adapter folder or a checkpoint, not both")
    if not progress:
        with hf_bars_off():
            return load_analysis_model(spec, adapter=adapter, checkpoint=checkpoint, device=device)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(f"checkpoint {path}: file not found")
        loaded = model_from_checkpoint(path)
        if spec is not None and loaded.spec != spec:
            raise ConfigError(f"checkpoint {path} was trained on {loaded.spec!r}, not {spec!r}")
        model = merged_copy(loaded.model)
    else:
        if spec is None:
            raise ConfigError("give a model spec (built-in name, folder or hub name) or a checkpoint")
        loaded = load_model(spec)
        if adapter is None:
            model = merged_copy(loaded.model)
        else:
            model = merged_copy(_with_adapter(loaded, Path(adapter)))
    if device is not None:
        model = model.to(torch.device(device))
    return LoadedModel(model, loaded.tokenizer, loaded.spec, loaded.tokenizer_dir)


def _with_adapter(loaded: LoadedModel, adapter: Path) -> torch.nn.Module:
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"adapter {adapter}: not a peft adapter folder (no adapter_config.json)")

    try:
        return PeftModel.from_pretrained(loaded.model, str(adapter))
    except (ValueError, RuntimeError, KeyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"adapter {adapter}: does not fit model {loaded.spec!r} ({first})") from None
