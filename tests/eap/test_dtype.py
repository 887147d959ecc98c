"""The bfloat16 buffer option: half the memory, scores and faithfulness close to float32."""

from __future__ import annotations

import pytest
import torch

from circuitft.data.tasks import make_pairs
from circuitft.eap.attribute import attribute
from circuitft.eap.evaluate import evaluate, faithfulness
from circuitft.eap.forward import buffer_dtype
from circuitft.eap.graph import Graph
from circuitft.eap.select import select
from circuitft.errors import ConfigError
from circuitft.models.merge import merged_copy


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma2", "tiny-olmo2", "tiny-gptj"])
def test_bfloat16_buffers_match_float32(tiny, name: str) -> None:
    loaded = tiny(name)
    model = merged_copy(loaded.model)
    pairs = make_pairs("AddSub", loaded.tokenizer, 12, 0, lo=0, hi=9)
    g32 = attribute(model, Graph.from_model(model), pairs, progress=False)
    g16 = attribute(model, Graph.from_model(model), pairs, progress=False, dtype="bfloat16")
    real = g32.cfg.real_edge_mask
    r = torch.corrcoef(torch.stack([g32.scores[real], g16.scores[real]]))[0, 1].item()
    assert r > 0.999, r
    assert g16.meta["buffer_dtype"] == "bfloat16" and g32.meta["buffer_dtype"] == "float32"
    select(g32, top_frac=0.2)
    f32 = faithfulness(evaluate(model, g32, pairs, progress=False))["faithfulness"]
    f16 = faithfulness(evaluate(model, g32, pairs, progress=False, dtype="bfloat16"))["faithfulness"]
    assert f16 == pytest.approx(f32, abs=0.02)


def test_unknown_dtype_is_one_line(tiny) -> None:
    with pytest.raises(ConfigError, match="valid: float32, bfloat16"):
        buffer_dtype(tiny("tiny-gpt2").model, "int8")
