"""Metrics at teacher-forced answer positions: values by hand, wrong-answer handling, errors."""

from __future__ import annotations

import math

import pytest
import torch

from circuitft.data.pairs import tokenize_pairs
from circuitft.data.rows import PromptRow
from circuitft.eap.metrics import (
    METRICS,
    AnswerIndex,
    answer_exact_match,
    check_metric,
    metric_loss,
    metric_values,
    validate_pairs,
)
from circuitft.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny("tiny-gpt2").tokenizer


def _pairs(tok, rows):
    return tokenize_pairs(rows, tok, "t")


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        check_metric("accuracy")
    for name in METRICS:
        assert name in str(err.value)


def test_answer_index_rows_follow_answer_index(tok):
    pairs = _pairs(
        tok, [PromptRow("1 + 2 =", "1 + 3 =", "3"), PromptRow("5 + 5 + 5 =", "5 + 5 + 6 =", "1 5")]
    )
    batch = pairs.batch([0, 1])
    index = AnswerIndex.from_batch(batch, "kl")
    ex, pos, token = batch.answer_index()
    assert index.mask.sum() == 3 and index.example.tolist() == [0, 1, 1]
    assert torch.equal(index.mask.nonzero()[:, 1], pos) and torch.equal(index.token, token)


def _logits_for(index: AnswerIndex, v: int, hot: dict[int, int], scale: float = 4.0) -> torch.Tensor:
    """Kept logits [n, V]: row r puts `scale` on token hot[r] (zeros elsewhere)."""
    logits = torch.zeros(len(index.token), v)
    for r, t in hot.items():
        logits[r, t] = scale
    return logits


def test_kl_logprob_and_accuracy_by_hand(tok):
    pairs = _pairs(
        tok, [PromptRow("1 + 2 =", "1 + 3 =", "3"), PromptRow("5 + 5 + 5 =", "5 + 5 + 6 =", "1 5")]
    )
    index = AnswerIndex.from_batch(pairs.batch([0, 1]), "kl")
    v = 12
    tokens = index.token.tolist()  # digits 3, 1, 5 -> ids 7, 5, 9 in the tiny vocabulary
    clean = _logits_for(index, v, {r: t for r, t in enumerate(tokens)})
    clean_lp = torch.log_softmax(clean, -1)
    assert torch.allclose(metric_values("kl", clean, index, clean_lp), torch.zeros(2), atol=1e-6)
    uniform = torch.zeros_like(clean)
    p = math.exp(4) / (math.exp(4) + v - 1)
    kl_one = p * math.log(p * v) + (1 - p) * math.log(
        (1 - p) / (v - 1) * v
    )  # KL(P || uniform), summed over V
    assert torch.allclose(
        metric_values("kl", uniform, index, clean_lp), torch.tensor([kl_one, kl_one]), atol=1e-5
    )
    # logprob averages over the answer tokens of each example: example 1 has one right and one wrong token
    run = clean.clone()
    run[2] = 0.0
    run[2, tokens[2] + 1] = 4.0
    lp = metric_values("logprob", run, index, None)
    assert torch.allclose(
        lp, torch.tensor([math.log(p), (math.log(p) + math.log(1 / (math.exp(4) + v - 1))) / 2])
    )
    right = lambda logits, first=False: answer_exact_match(  # noqa: E731
        logits, index.token, index.answer_len, first_token=first
    ).tolist()
    assert right(clean) == [True, True]
    assert right(run) == [True, False]  # all answer tokens must be right
    assert right(run, first=True) == [True, True]  # example 1's first token is right
    first_wrong = clean.clone()
    first_wrong[1] = 0.0
    first_wrong[1, tokens[1] + 1] = 4.0  # example 1's first answer token wrong, its second right
    assert right(first_wrong, first=True) == [True, False]
    # attribution loss = sum over examples, loss sign (logprob negated)
    assert torch.allclose(metric_loss("logprob", run, index, None), -lp.sum())


def test_logit_diff_uses_first_differing_answer_token(tok):
    rows = [PromptRow("1 + 2 =", "1 + 3 =", "1 7", "1 8"), PromptRow("2 + 2 =", "2 + 3 =", "4", "5")]
    pairs = _pairs(tok, rows)
    validate_pairs(pairs, "logit_diff")
    index = AnswerIndex.from_batch(pairs.batch([0, 1]), "logit_diff")
    assert index.diff_row.tolist() == [1, 2]  # second answer token of row 0, the only token of row 1
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    logits = torch.zeros(3, 40)
    logits[1, ids("7")], logits[1, ids("8")] = 2.0, 0.5
    logits[2, ids("4")], logits[2, ids("5")] = -1.0, 1.0
    assert torch.allclose(metric_values("logit_diff", logits, index, None), torch.tensor([1.5, -2.0]))
    probs = torch.softmax(logits, -1)
    pd = metric_values("prob_diff", logits, index, None)
    assert torch.allclose(pd[0], probs[1, ids("7")] - probs[1, ids("8")])


def test_metrics_needing_wrong_answers_raise_data_error(tok):
    no_wrong = _pairs(tok, [PromptRow("1 + 2 =", "1 + 3 =", "3")])
    with pytest.raises(DataError, match="wrong"):
        validate_pairs(no_wrong, "logit_diff")
    validate_pairs(no_wrong, "kl")
    same = _pairs(tok, [PromptRow("1 + 2 =", "1 + 3 =", "3", "4"), PromptRow("1 + 2 =", "1 + 3 =", "3", "3")])
    with pytest.raises(DataError, match="row 2"):
        validate_pairs(same, "prob_diff")
