"""Tiny random-weight models built from configs, plus a word-level tokenizer saved to a folder.

They exist for tests and smoke runs: no download, a few milliseconds to build, deterministic weights
(seeded), and the three attention layouts the EAP engine must handle: fused QKV (GPT-2), grouped-query
attention (Llama, Qwen2) and parallel attention/MLP (GPT-NeoX).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from circuitft.files import atomic_folder

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
# Words used by the built-in task prompts; everything else maps to <unk>.
_WORDS = """
Solve the following and respond with only final answer in base : = + - * / % # ~ § ¤ ◇ ( ) , . ? !
When went to store gave a drink The war lasted from year to 17 18 19 Mary John Alice Bob Tom Sarah
James Emma David Anna Paul Laura Mark Lisa Peter Kate shop park school office beach market kitchen
garden book ball pen apple cup key gift letter then and was is of it In
Then After While were at expedition project strike drought famine
""".split()
_NAMES = ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-neox"]


def tokenizer_folder_name() -> str:
    """Cache folder name of the tiny tokenizer, keyed by its vocabulary (a changed word list gets a new folder)."""
    import hashlib

    words = SPECIAL_TOKENS + list(string.digits) + _WORDS + list(string.ascii_letters)
    return "tiny-tokenizer-" + hashlib.sha256("\n".join(words).encode()).hexdigest()[:12]


def tiny_specs() -> list[str]:
    """The names of the built-in tiny models."""
    return list(_NAMES)


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Build the word-level test tokenizer (digits split one per token), save it to ``folder``, reload it.

    Saving and reloading matters: TransformerLens reloads a tokenizer by its ``name_or_path``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

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
    atomic_folder(fast.save_pretrained, folder)  # DDP ranks may build it at the same time
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def build_tiny_model(name: str, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A tiny random model of the given family; weights depend only on ``seed``."""
    # initializer_range 0.2 (HF default 0.02): with 0.02 a tiny model attends uniformly, so query/key paths
    # would carry no signal and tests of attribution through them would pass vacuously.
    common = dict(
        vocab_size=vocab_size, bos_token_id=2, eos_token_id=3, pad_token_id=0, initializer_range=0.2
    )
    if name == "tiny-gpt2":
        cfg = GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=128, **common)
        cls = GPT2LMHeadModel
    elif name == "tiny-llama":
        cfg = LlamaConfig(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
            intermediate_size=64, max_position_embeddings=128, tie_word_embeddings=False, **common,
        )  # fmt: skip
        cls = LlamaForCausalLM
    elif name == "tiny-qwen2":
        cfg = Qwen2Config(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
            intermediate_size=64, max_position_embeddings=128, tie_word_embeddings=False, **common,
        )  # fmt: skip
        cls = Qwen2ForCausalLM
    elif name == "tiny-neox":
        cfg = GPTNeoXConfig(
            num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64,
            max_position_embeddings=128, use_parallel_residual=True, rotary_pct=0.25, **common,
        )  # fmt: skip
        cls = GPTNeoXForCausalLM
    else:
        raise KeyError(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
        _randomize_biases_and_norms(model)
    model.config.architectures = [cls.__name__]
    return model.eval()


def _randomize_biases_and_norms(model: torch.nn.Module) -> None:
    """Give biases and norm gains random values (HF initialises them to 0 and 1).

    With all-zero biases and unit norms a tiny model would hide bugs in how attribution handles the
    attention output bias, q/k/v biases or the norms; random values make such bugs change the numbers.
    """
    with torch.no_grad():
        for module in model.modules():
            is_norm = isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
            for name, param in module.named_parameters(recurse=False):
                if is_norm and name == "weight":
                    param.normal_(1.0, 0.2)
                elif name == "bias":
                    param.normal_(0.0, 0.1)
