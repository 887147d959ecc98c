"""Answers that join their prompt differently than in running text (a missing leading space, ...)."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from circuitft.data.check import glue_problems
from circuitft.data.rows import PromptRow

CAPITALS = [("France", "Paris", "China", "Beijing"), ("Spain", "Madrid", "Greece", "Athens")]


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE (as GPT-2 / SmolLM2 tokenize: a word's leading space is part of its token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f"The capital of {c} is {a}. {a} is a city." for row in CAPITALS for c, a in (row[:2], row[2:])]
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def rows(answer_prefix: str, prompt_suffix: str = "") -> list[PromptRow]:
    return [
        PromptRow(f"The capital of {c} is{prompt_suffix}", f"The capital of {c2} is{prompt_suffix}",
                  answer_prefix + a, answer_prefix + w)
        for c, a, c2, w in CAPITALS
    ]  # fmt: skip


def test_missing_leading_space_is_caught_with_a_bpe_tokenizer():
    tok = bpe_tokenizer()
    assert tok(" Paris")["input_ids"] != tok("Paris")["input_ids"]  # the premise: the space matters
    assert glue_problems(rows(" "), tok) == []  # answers with their leading space are fine
    found = glue_problems(rows(""), tok)
    assert [(p.row, p.column) for p in found] == [(1, "answer"), (1, "wrong"), (2, "answer"), (2, "wrong")]
    first = found[0]
    assert first.text == "Paris" and first.suggestion == "' Paris' (leading space)"
    assert " Paris" in first.in_text and " Paris" not in first.as_built
    line = first.describe()
    assert line.startswith("row 1: answer 'Paris'") and "did you mean ' Paris' (leading space)?" in line


def test_a_trailing_space_in_the_prompt_is_a_split_boundary():
    tok = bpe_tokenizer()
    found = glue_problems(rows("", prompt_suffix=" "), tok)  # "is " + "Paris": running text has " Paris"
    assert found and all(p.kind == "split boundary" for p in found)
    assert found[0].in_text == [" Paris"] and found[0].as_built[0] == " "
    assert "the prompt without its trailing space and ' Paris'" in found[0].suggestion


def test_word_level_tokenizer_glued_words_and_clean_rows(tiny):
    tok = tiny("tiny-gpt2").tokenizer  # splits on whitespace: "toMary" is one unknown word
    glued = [PromptRow("When Mary and John went to the store, John gave a drink to",
                       "When Mary and John went to the store, Mary gave a drink to", "Mary", "John")]  # fmt: skip
    found = glue_problems(glued, tok)
    assert [p.kind for p in found] == ["split boundary", "split boundary"]
    assert found[0].in_text == ["<unk>"] and found[0].as_built == ["to", "Mary"]
    assert found[0].suggestion == "' Mary' (leading space)"
    spaced = [PromptRow(r.clean, r.corrupted, " Mary", " John") for r in glued]
    digits = [PromptRow("1 + 2 =", "1 + 3 =", "3", "4"), PromptRow("12+9=", "12+7=", "21", "19")]
    assert glue_problems(spaced + digits, tok) == []


@pytest.mark.slow
def test_smollm2_capitals_without_leading_space(default_cache):
    from circuitft.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    found = glue_problems(rows(""), tok)
    assert [p.kind for p in found] == ["glued words"] * 4 and found[0].in_text == [" Paris"]
    assert glue_problems(rows(" "), tok) == []
    digits = [
        PromptRow("59+63=", "59+15=", "122", "74"),
        PromptRow("法国的首都是", "中国的首都是", "巴黎", "北京"),
    ]
    assert glue_problems(digits, tok) == []  # no space belongs there
