"""Loss and accuracy on the answer tokens of a batch (prompt and padding carry neither)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from circuitft.data.pairs import PairBatch
from circuitft.eap.metrics import answer_exact_match


def answer_logits(logits: torch.Tensor, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits at answer positions [N, V], answer tokens [N], example of each [N])``."""
    ex, pos, tok = batch.answer_index()
    return logits[ex, pos], tok, ex


def answer_loss(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens only (prompt and padding carry no loss)."""
    sel, tok, _ = answer_logits(logits, batch)
    return F.cross_entropy(sel.float(), tok)


def exact_match(logits: torch.Tensor, batch: PairBatch, first_token: bool = False) -> torch.Tensor:
    """Per example: 1.0 when the teacher-forced argmax equals every answer token (``first_token``: the
    first answer token only, as the prior work scored), else 0.0 (:func:`~circuitft.eap.metrics.answer_exact_match`
    on the logits [B, T, V] of a whole batch)."""
    sel, tok, _ = answer_logits(logits, batch)
    return answer_exact_match(sel, tok, batch.answer_len, first_token).float()
