"""The model's accuracy on rows alone equals evaluate()'s model accuracy; its own answers score 100%."""

from __future__ import annotations

import torch
from digits import digit_rows

from circuitft.data.pairs import tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.eap.accuracy import model_accuracy
from circuitft.eap.evaluate import evaluate
from circuitft.eap.graph import Graph


def test_matches_evaluate_and_scores_the_models_own_answers_right(tiny):
    loaded = tiny("tiny-gpt2")
    model, tok = loaded.model, loaded.tokenizer
    pairs = tokenize_pairs(digit_rows(10, two_token_answers=True), tok, "add")
    result = model_accuracy(model, pairs, batch_size=3)
    full = evaluate(model, Graph.from_model(model).full(), pairs, batch_size=4, progress=False)
    assert torch.equal(result.correct, full.model_correct)
    first = model_accuracy(model, pairs, batch_size=3, accuracy="first_token")
    full_first = evaluate(
        model, Graph.from_model(model).full(), pairs, progress=False, accuracy="first_token"
    )
    assert torch.equal(first.correct, full_first.model_correct)
    # rows whose answer is the model's own greedy first token: all right; any other token: all wrong
    said = zip(pairs.rows, result.first_prediction, strict=True)
    own = [PromptRow(r.clean, r.corrupted, tok.decode([int(t)])) for r, t in said]
    own_pairs = tokenize_pairs(own, tok, "own")
    assert len(own_pairs) == len(own) and model_accuracy(model, own_pairs).accuracy == 1.0
    other = [PromptRow(r.clean, r.corrupted, "Mary" if r.answer != "Mary" else "John") for r in own]
    assert model_accuracy(model, tokenize_pairs(other, tok, "other")).accuracy == 0.0
