"""Task data: rows (strings), generators, file sources, PromptPairs (tokenized) and the task stream."""

from circuitft.data.pairs import PairBatch, PromptPairs, tokenize_pairs
from circuitft.data.rows import PromptRow

__all__ = ["PairBatch", "PromptPairs", "PromptRow", "tokenize_pairs"]
