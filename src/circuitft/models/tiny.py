"""Tiny random-weight models built from configs, plus a word-level tokenizer saved to a folder.

They exist for tests and smoke runs: no download, a few milliseconds to build, deterministic weights
(seeded). One tiny model per family of the architecture table (``tiny-<family>``, see
:data:`circuitft.models.architectures.ARCHITECTURES`): fused QKV (GPT-2, Phi-3), grouped-query attention
(Llama, Qwen2, Qwen3, ...), parallel attention/MLP (GPT-NeoX), norms after attention and MLP (Gemma 2/3,
OLMo 2) and mixtures of experts (Mixtral, Qwen2-MoE, Qwen3-MoE). ``random-qwen3-135m`` is a random Qwen3 of SmolLM2-135M's shape
(for ``circuitft bench eap``).
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from circuitft.files import atomic_folder
from circuitft.models.architectures import ARCHITECTURES, ArchSpec, tiny_architectures

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
# Words used by the built-in task prompts; everything else maps to <unk>.
_WORDS = """
Solve the following and respond with only final answer in base : = + - * / % # ~ § ¤ ◇ ( ) , . ? !
When went to store gave a drink The war lasted from year to 17 18 19 Mary John Alice Bob Tom Sarah
James Emma David Anna Paul Laura Mark Lisa Peter Kate shop park school office beach market kitchen
garden book ball pen apple cup key gift letter then and was is of it In
Then After While were at expedition project strike drought famine
""".split()
# Random models of a real model's shape: name -> (model type, config arguments, vocabulary size).
SHAPED = {
    "random-qwen3-135m": (
        "qwen3",
        dict(
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            hidden_size=576,
            head_dim=64,
            intermediate_size=1536,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        ),
        49152,
    ),  # SmolLM2-135M's shape with Qwen3's q/k norms
}


def tokenizer_folder_name() -> str:
    """Cache folder name of the tiny tokenizer, keyed by its vocabulary (a changed word list gets a new folder)."""
    words = SPECIAL_TOKENS + list(string.digits) + _WORDS + list(string.ascii_letters)
    return "tiny-tokenizer-" + hashlib.sha256("\n".join(words).encode()).hexdigest()[:12]


def tiny_specs() -> list[str]:
    """The names of the built-in tiny models (one per family with a tiny config, then the shaped ones)."""
    return [*tiny_architectures(), *SHAPED]


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Build the word-level test tokenizer (digits split one per token), save it to ``folder``, reload it.

    Saving and reloading matters: TransformerLens reloads a tokenizer by its ``name_or_path``.
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + list(string.digits) + _WORDS + list(string.ascii_letters):
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )
    atomic_folder(fast.save_pretrained, folder, overwrite=False)  # DDP ranks may build it at the same time
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def build_tiny_model(name: str, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A tiny random model of the given family; weights depend only on ``seed``.

    Shaped models (:data:`SHAPED`) use their own vocabulary size; token ids beyond the tokenizer's are fine
    for synthetic benchmark data.
    """
    # initializer_range 0.2 (HF default 0.02): with 0.02 a tiny model attends uniformly, so query/key paths
    # would carry no signal and tests of attribution through them would pass vacuously.
    common = dict(
        vocab_size=vocab_size, bos_token_id=2, eos_token_id=3, pad_token_id=0, initializer_range=0.2
    )
    if name in SHAPED:
        model_type, config_args, common["vocab_size"] = SHAPED[name]

        spec: ArchSpec = ARCHITECTURES[model_type]
        common["initializer_range"] = 0.02
    else:
        _, spec = tiny_architectures()[name]
        config_args = spec.tiny_config
    cls = getattr(transformers, spec.hf_class)
    cfg = cls.config_class(**config_args, **common)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
        _randomize_biases_and_norms(model, offset=spec.norm == "rms_offset")
    model.config.architectures = [cls.__name__]
    return model.eval()


def _randomize_biases_and_norms(model: torch.nn.Module, offset: bool = False) -> None:
    """Give biases and norm gains random values (HF initialises them to 0 and 1; ``offset``: Gemma's norms
    store gain - 1).

    With all-zero biases and unit norms a tiny model would hide bugs in how attribution handles the
    attention output bias, q/k/v biases or the norms; random values make such bugs change the numbers.
    """
    with torch.no_grad():
        for module in model.modules():
            is_norm = isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
            for name, param in module.named_parameters(recurse=False):
                if is_norm and name == "weight":
                    param.normal_(0.0 if offset else 1.0, 0.2)
                elif name == "bias":
                    param.normal_(0.0, 0.1)
