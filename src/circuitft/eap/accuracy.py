"""The full model's accuracy on task rows alone (no circuit): the clean run of
:func:`circuitft.eap.evaluate.evaluate`, scored with the same :func:`circuitft.eap.metrics.answer_exact_match`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.forward import analysis_mode, kept_logits, length_batches, model_device
from circuitft.eap.metrics import AnswerIndex, answer_exact_match
from circuitft.errors import ConfigError


@dataclass
class RowAccuracy:
    """Per-row results of the model's greedy answers (tensors [N], in row order)."""

    correct: torch.Tensor  # bool: every answer token is the top prediction (or the first, ``first_token``)
    first_prediction: torch.Tensor  # long: the model's top token where the first answer token is predicted
    predictions: list[list[int]] | None = (
        None  # per row: the top token at every answer position (teacher-forced)
    )

    @property
    def accuracy(self) -> float:
        """Share of rows answered correctly (NaN without rows)."""
        return float(self.correct.float().mean()) if len(self.correct) else float("nan")


def model_accuracy(
    model: torch.nn.Module, pairs: PromptPairs, *, batch_size: int = 8, accuracy: str = "exact_match"
) -> RowAccuracy:
    """Greedy exact match of every answer token (teacher-forced), batched, on the clean prompts."""
    if accuracy not in ("exact_match", "first_token"):
        raise ConfigError(f"accuracy must be 'exact_match' or 'first_token', got {accuracy!r}")
    device = model_device(model)
    hits, firsts, order, preds = [], [], [], []
    with analysis_mode(model), torch.no_grad():
        for rows, batch in length_batches(pairs, batch_size):
            batch = batch.to(device)
            index = AnswerIndex.from_batch(batch, "kl")  # no wrong answer needed
            logits = kept_logits(model, index, input_ids=batch.clean_ids, attention_mask=batch.attention_mask)
            hits.append(
                answer_exact_match(logits, index.token, index.answer_len, accuracy == "first_token").cpu()
            )
            start = torch.cumsum(index.answer_len, 0) - index.answer_len  # first kept row of each example
            top = logits.argmax(-1).cpu()
            firsts.append(top[start.cpu()])
            preds += [
                top[a : a + n].tolist()
                for a, n in zip(start.tolist(), index.answer_len.tolist(), strict=True)
            ]
            order.append(rows)
    if not order:
        return RowAccuracy(torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
    back = torch.argsort(torch.cat(order))
    return RowAccuracy(torch.cat(hits)[back], torch.cat(firsts)[back], [preds[i] for i in back.tolist()])


__all__ = ["RowAccuracy", "model_accuracy"]
