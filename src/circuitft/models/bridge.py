"""The analysis form of a model: a TransformerLens 4 ``TransformerBridge`` booted from a merged copy.

``to_bridge`` is the one place that turns a training model (HF, with or without a peft LoRA adapter) into
something TransformerLens can hook, avoiding the known traps of TransformerLens 4 and peft:

- boot a **merged copy** (``merged_copy``), never the training model: booting rewrites a model in place,
  and a live peft model gives wrong logits once the EAP flags are on;
- hand TransformerLens a tokenizer loaded from a folder (it reloads tokenizers by ``name_or_path``);
- use a neutral model name (``local/<model_type>``) so TL's alias table cannot remap it to a hub model;
- switch on the three hooks EAP needs: per-head attention results, per-head q/k/v inputs, MLP inputs.

``bridge_hooks`` says where EAP's sources and destinations live on such a bridge (see :class:`BridgeHooks`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import PreTrainedTokenizerBase

from circuitft.files import atomic_folder
from circuitft.models.loading import cache_dir, tokenizer_from
from circuitft.models.merge import merged_copy

QKV = Literal["q", "k", "v"]


def to_bridge(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    tokenizer_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
):
    """A ``TransformerBridge`` over a merged, frozen copy of ``model``, with the three EAP hooks on.

    ``model`` is a Hugging Face causal LM or a ``peft.PeftModel`` around one; it is not modified (its
    state dict, ``requires_grad`` flags and deep-copyability are unchanged). ``tokenizer_dir`` is a folder
    holding ``tokenizer`` (``LoadedModel.tokenizer_dir``); without it the tokenizer is saved to a
    content-addressed folder under the circuitft cache. Works offline. Returns the bridge in eval mode
    with every parameter frozen: gradients reach hooks only from an activation that requires grad (EAP
    makes the embedding output require grad), and nothing accumulates in ``.grad`` of weights.
    """
    merged = merged_copy(model, dtype=dtype).to(device)
    if not getattr(merged.config, "architectures", None):
        merged.config.architectures = [type(merged).__name__]
    tok = _reloadable_tokenizer(tokenizer, tokenizer_dir)
    name = f"local/{getattr(merged.config, 'model_type', None) or type(merged).__name__}"
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=merged, tokenizer=tok, device=device, dtype=dtype
    )
    bridge.set_use_attn_result(True)
    bridge.set_use_split_qkv_input(True)
    bridge.set_use_hook_mlp_in(True)
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    return bridge


def _reloadable_tokenizer(
    tokenizer: PreTrainedTokenizerBase, tokenizer_dir: str | os.PathLike | None
) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` loaded from a folder (so TL's reload by ``name_or_path`` is local)."""
    # A folder with only the tokenizer: with a config.json beside it, TL's own reload (AutoTokenizer by
    # name_or_path) may pick a model-specific tokenizer class and change the ids (see loading.tokenizer_from).
    usable = tokenizer_dir is not None and (Path(tokenizer_dir) / "tokenizer_config.json").is_file()
    if usable and not (Path(tokenizer_dir) / "config.json").exists():
        folder = Path(tokenizer_dir)
    else:
        folder = _saved_tokenizer_folder(tokenizer)
    tok = tokenizer_from(str(folder))
    # Keep settings made in memory after loading (e.g. pad = eos) that the folder may not hold.
    if tokenizer.pad_token is not None and tok.pad_token != tokenizer.pad_token:
        tok.pad_token = tokenizer.pad_token
    tok.padding_side = tokenizer.padding_side
    return tok


def _saved_tokenizer_folder(tokenizer: PreTrainedTokenizerBase) -> Path:
    """Save ``tokenizer`` once to ``<cache>/tokenizers/saved-<hash of its files>`` and return that folder."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        digest = hashlib.sha256()
        for f in sorted(Path(tmp).iterdir()):
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    folder = cache_dir() / "tokenizers" / f"saved-{digest.hexdigest()[:16]}"
    if not (folder / "tokenizer_config.json").is_file():
        atomic_folder(tokenizer.save_pretrained, folder, overwrite=False)
    return folder


@dataclass(frozen=True)
class BridgeHooks:
    """Where EAP's sources and destinations live on a bridge made by :func:`to_bridge`.

    All names are **canonical** hook names: the ones ``hook.name`` reports inside a hook function (TL also
    registers aliases such as ``blocks.L.hook_q_input``; anything keyed by an alias will not match).
    Shapes, with b batch, p positions, H heads, G key/value groups (G == H without GQA), d d_model:

    - ``input`` (``hook_embed`` = ``embed.hook_out``) [b, p, d]: token embeddings only; GPT-2's positional
      embedding (``hook_pos_embed``) belongs to no node.
    - ``attn_result(l)`` (``blocks.l.attn.hook_result``) [b, p, H, d]: each head's write to the residual
      stream, **without** the output bias b_O (sum over heads + b_O == ``blocks.l.hook_attn_out``).
    - ``qkv_input(l, "q")`` [b, p, H, d]; ``qkv_input(l, "k" | "v")`` [b, p, G, d]: the residual stream
      before ln1, one copy per head (q) or per key/value group (k, v).
    - ``mlp_in(l)`` [b, p, d]: the MLP's input before ln2 (``hook_resid_mid``, or ``hook_resid_pre`` with
      parallel attention/MLP as in GPT-NeoX); ``mlp_out(l)`` (``blocks.l.mlp.hook_out``) [b, p, d].
    - ``logits`` (last ``hook_resid_post`` = ``blocks.{L-1}.hook_out``) [b, p, d]: before the final norm;
      equals ``input`` + positional embedding + every ``attn_result`` + every b_O + every ``mlp_out``.
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    parallel_attn_mlp: bool
    input: str = "embed.hook_out"

    def attn_result(self, layer: int) -> str:
        """Per-head attention output (source a{layer}.h*)."""
        return f"blocks.{layer}.attn.hook_result"

    def qkv_input(self, layer: int, which: QKV) -> str:
        """Per-head query input or per-group key/value input (destinations a{layer}.h*<q>, <k>, <v>)."""
        return f"blocks.{layer}.attn.hook_{which}_input"

    def mlp_in(self, layer: int) -> str:
        """MLP input (destination m{layer})."""
        return f"blocks.{layer}.hook_mlp_in"

    def mlp_out(self, layer: int) -> str:
        """MLP output (source m{layer})."""
        return f"blocks.{layer}.mlp.hook_out"

    @property
    def logits(self) -> str:
        """The residual stream after the last block (destination ``logits``)."""
        return f"blocks.{self.n_layers - 1}.hook_out"

    def sources(self) -> list[str]:
        """Every source hook, in the graph's forward-index order of layers (input, then attn and MLP)."""
        names = [self.input]
        for layer in range(self.n_layers):
            names += [self.attn_result(layer), self.mlp_out(layer)]
        return names

    def destinations(self) -> list[str]:
        """Every destination hook: per layer q, k, v inputs and the MLP input, then the logits."""
        names = []
        for layer in range(self.n_layers):
            names += [self.qkv_input(layer, w) for w in ("q", "k", "v")] + [self.mlp_in(layer)]
        return names + [self.logits]


# Alias -> canonical; checked against the bridge so a TransformerLens rename fails loudly here.
_ALIASES = {
    "hook_embed": "embed.hook_out",
    "blocks.{l}.hook_q_input": "blocks.{l}.attn.hook_q_input",
    "blocks.{l}.hook_k_input": "blocks.{l}.attn.hook_k_input",
    "blocks.{l}.hook_v_input": "blocks.{l}.attn.hook_v_input",
    "blocks.{l}.attn.hook_result": "blocks.{l}.attn.hook_result",
    "blocks.{l}.hook_mlp_in": "blocks.{l}.hook_mlp_in",
    "blocks.{l}.hook_mlp_out": "blocks.{l}.mlp.hook_out",
    "blocks.{l}.hook_resid_post": "blocks.{l}.hook_out",
}


def bridge_hooks(bridge) -> BridgeHooks:
    """The :class:`BridgeHooks` of ``bridge``; raises RuntimeError if a hook is missing or renamed."""
    cfg = bridge.cfg
    if not (cfg.use_attn_result and cfg.use_split_qkv_input and cfg.use_hook_mlp_in):
        raise RuntimeError("bridge was not made by to_bridge: the three EAP hook flags are not all on")
    n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    hooks = BridgeHooks(
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_kv_heads=n_kv,
        d_model=cfg.d_model,
        parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
    )
    table = bridge.hook_dict
    for layer in range(cfg.n_layers):
        for alias, canonical in _ALIASES.items():
            alias, canonical = alias.format(l=layer), canonical.format(l=layer)
            point = table.get(alias)
            if point is None or point.name != canonical:
                found = None if point is None else point.name
                raise RuntimeError(f"TransformerBridge hook {alias!r} is {found!r}, expected {canonical!r}")
    return hooks
