"""The architecture table: every entry loads, its tiny model is built from it, LoRA defaults come from it."""

from __future__ import annotations

import pytest
import torch
import transformers
from model_helpers import random_ids

from circuitft.models.architectures import ARCHITECTURES, tiny_architectures
from circuitft.models.lora import default_targets, wrap_lora
from circuitft.models.merge import merged_copy
from circuitft.models.tiny import tiny_specs

FAMILIES = list(tiny_architectures())


def test_every_entry_names_a_transformers_class_and_every_tiny_model_is_listed():
    for model_type, spec in ARCHITECTURES.items():
        cls = getattr(transformers, spec.hf_class)
        assert cls.config_class.model_type == model_type
    assert set(FAMILIES) <= set(tiny_specs())
    assert {"tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-olmo2", "tiny-phi3", "tiny-mixtral"} <= set(
        FAMILIES
    )


@pytest.mark.parametrize("spec", FAMILIES)
def test_tiny_model_is_its_tables_family(tiny, spec):
    model = tiny(spec).model
    model_type, arch = tiny_architectures()[spec]
    assert model.config.model_type == model_type and type(model).__name__ == arch.hf_class
    assert tiny(spec).model.state_dict().keys() == model.state_dict().keys()
    a, b = tiny(spec, seed=0).model, tiny(spec, seed=1).model
    assert torch.equal(next(a.parameters()), next(tiny(spec).model.parameters()))
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


@pytest.mark.parametrize("spec", FAMILIES)
def test_default_lora_targets_come_from_the_table_and_merge_exactly(tiny, spec):
    loaded = tiny(spec)
    _, arch = tiny_architectures()[spec]
    targets = default_targets(loaded.model)
    assert targets == ("all-linear" if isinstance(arch.lora_targets, str) else list(arch.lora_targets))
    peft_model = wrap_lora(loaded.model, r=2, alpha=4.0, dropout=0.0)
    wrapped = {
        n.split(".lora_A")[0].split(".")[-1] for n, _ in peft_model.named_parameters() if ".lora_A" in n
    }
    if isinstance(arch.lora_targets, tuple):
        assert wrapped == set(arch.lora_targets)
    else:
        assert wrapped and "lm_head" not in wrapped
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    ids = random_ids(len(loaded.tokenizer))
    with torch.no_grad():
        expected = peft_model(ids).logits
        with peft_model.disable_adapter():
            assert (peft_model(ids).logits - expected).abs().max() > 0.01
    merged = merged_copy(peft_model)
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, atol=5e-5, rtol=1e-5)


@pytest.mark.slow
def test_benchmark_sized_qwen3_has_smollm2s_shape(tiny):
    """``random-qwen3-135m`` (for ``circuitft bench eap --model random-qwen3-135m``): SmolLM2-135M's shape."""
    from circuitft.eap.graph import Graph

    model = tiny("random-qwen3-135m").model
    cfg = Graph.from_model(model).cfg
    assert model.config.model_type == "qwen3" and model.config.vocab_size == 49152
    assert (cfg.n_layers, cfg.n_heads, cfg.groups, cfg.d_model) == (30, 9, 3, 576)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6


def test_unsupported_model_folder_is_one_line_and_writes_nothing(tiny, tmp_path, capsys):
    from transformers import OPTConfig, OPTForCausalLM

    from circuitft.cli import main as cli_main

    tokenizer = tiny("tiny-gpt2").tokenizer
    opt = OPTForCausalLM(
        OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            ffn_dim=32,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=64,
        )
    )
    opt.save_pretrained(tmp_path / "opt")
    tokenizer.save_pretrained(tmp_path / "opt")
    rows = tmp_path / "rows.csv"
    rows.write_text("clean,corrupted,answer\n1 + 2 =,1 + 3 =,3\n2 + 2 =,2 + 5 =,4\n")
    status = cli_main(
        [
            "circuit",
            "--model",
            str(tmp_path / "opt"),
            "--data",
            str(rows),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert status != 0 and not (tmp_path / "out").exists()
    assert len(err) == 1 and "'opt'" in err[0] and "qwen3" in err[0] and "gemma2" in err[0]
