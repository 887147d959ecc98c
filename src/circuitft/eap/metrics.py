"""Task metrics for attribution and evaluation, computed at every (teacher-forced) answer position.

All metrics read the logits only at answer positions: :func:`answer_mask` is passed to the model as
``logits_to_keep``, so the model returns one row of logits per answer token, in the order of
:meth:`PairBatch.answer_index` (example-major, answer tokens in order).

- ``kl``: KL(P_clean || P_run) summed over the vocabulary (not the vocabulary mean some prior code used),
  averaged over the answer positions of an example. 0 for the clean run; lower is better.
- ``logit_diff``: logit(answer) - logit(wrong) at the first answer position where answer and wrong differ.
- ``prob_diff``: p(answer) - p(wrong) at that position.
- ``logprob``: mean log p(answer token) over the answer positions.

Evaluation reports these natural values per example. Attribution uses a loss: ``LOSS_SIGN[m] * value``
(KL as is, the others negated), so scores estimate the change of the loss when an edge is corrupted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import multiclass_exact_match

from circuitft.data.pairs import PAD_LABEL, PairBatch, PromptPairs
from circuitft.eap.settings import ACCURACIES as ACCURACIES  # re-exported: the accuracy option
from circuitft.eap.settings import METRICS, check_metric
from circuitft.errors import ConfigError, DataError

LOSS_SIGN = {"kl": 1.0, "logit_diff": -1.0, "prob_diff": -1.0, "logprob": -1.0}
NEEDS_WRONG = ("logit_diff", "prob_diff")


def _first_difference(answer: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """[N] index of the first position where answer and wrong tokens differ (-1 where there is none)."""
    a = answer.shape[1]
    w = wrong.shape[1]
    width = max(a, w)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_LABEL)  # noqa: E731
    answer, wrong = pad(answer), pad(wrong)
    differ = (answer != wrong) & (answer != PAD_LABEL) & (wrong != PAD_LABEL)
    first = torch.where(
        differ.any(1), differ.float().argmax(1), torch.full_like(differ[:, 0], -1, dtype=torch.long)
    )
    return first.long()


def validate_pairs(pairs: PromptPairs, metric: str) -> None:
    """Raise :class:`DataError` if ``pairs`` cannot be scored with ``metric`` (e.g. no ``wrong`` answer)."""
    check_metric(metric)
    if metric not in NEEDS_WRONG:
        return
    if pairs.wrong_ids is None:
        raise DataError(
            f"metric {metric!r} needs a 'wrong' answer for every row, but task {pairs.task!r} has none "
            "(use metric 'kl' or 'logprob', or add a 'wrong' column)"
        )
    first = _first_difference(pairs.answer_ids, pairs.wrong_ids)
    bad = (first < 0).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"task {pairs.task!r} row {i + 1}: metric {metric!r} needs a 'wrong' answer that differs from "
            f"the answer at some token (answer {pairs.rows[i].answer!r}, wrong {pairs.rows[i].wrong!r})"
        )


@dataclass
class AnswerIndex:
    """Where a batch's answer tokens are predicted; rows of the kept logits follow this order."""

    mask: torch.Tensor  # [B, T] bool: positions whose logits are kept (pass as ``logits_to_keep``)
    example: torch.Tensor  # [n] long: example of each kept row
    token: torch.Tensor  # [n] long: the answer token each kept row predicts
    n_examples: int
    answer_len: torch.Tensor  # [B] long
    diff_row: torch.Tensor | None  # [B] long: kept row of the first answer/wrong difference
    diff_answer: torch.Tensor | None  # [B] long: answer token there
    diff_wrong: torch.Tensor | None  # [B] long: wrong token there

    @classmethod
    def from_batch(cls, batch: PairBatch, metric: str) -> AnswerIndex:
        """Index of ``batch`` for ``metric`` (wrong-answer rows only for logit_diff / prob_diff)."""
        ex, pos, tok = batch.answer_index()
        b, t = batch.clean_ids.shape
        mask = torch.zeros(b, t, dtype=torch.bool, device=ex.device)
        mask[ex, pos] = True
        diff_row = diff_answer = diff_wrong = None
        if metric in NEEDS_WRONG:
            if batch.wrong_ids is None:
                raise DataError(f"metric {metric!r} needs a 'wrong' answer for every row")
            first = _first_difference(batch.answer_ids, batch.wrong_ids)
            if (first < 0).any():
                raise DataError(f"metric {metric!r}: a row's 'wrong' answer never differs from its answer")
            start = torch.cumsum(batch.answer_len, 0) - batch.answer_len  # first kept row of each example
            rows = torch.arange(b, device=ex.device)
            diff_row = start + first
            diff_answer = batch.answer_ids[rows, first]
            diff_wrong = batch.wrong_ids[rows, first]
        return cls(mask, ex, tok, b, batch.answer_len, diff_row, diff_answer, diff_wrong)

    def per_example_mean(self, values: torch.Tensor) -> torch.Tensor:
        """[n] per-row values -> [B] mean over each example's answer tokens."""
        out = torch.zeros(self.n_examples, dtype=values.dtype, device=values.device)
        out.index_add_(0, self.example, values)
        return out / self.answer_len.to(values.dtype)


def wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 if it already is (metrics never run in half precision)."""
    return t if t.dtype == torch.float64 else t.float()


def kl_rows(logp_ref: torch.Tensor, logp_run: torch.Tensor) -> torch.Tensor:
    """[n] KL(P_ref || P_run) summed over the vocabulary, from log-probabilities [n, V]."""
    return (logp_ref.exp() * (logp_ref - logp_run)).sum(-1)


def metric_values(
    metric: str, logits: torch.Tensor, index: AnswerIndex, clean_logp: torch.Tensor | None
) -> torch.Tensor:
    """[B] natural per-example values of ``metric`` from the kept logits [n, V] (float32 inside).

    ``clean_logp`` ([n, V] log-probabilities of the clean run) is needed for ``kl``.
    """
    logp = torch.log_softmax(wide(logits), dim=-1)
    if metric == "kl":
        if clean_logp is None:
            raise ValueError("the kl metric needs the clean log-probabilities")
        return index.per_example_mean(kl_rows(clean_logp, logp))
    if metric == "logprob":
        return index.per_example_mean(logp.gather(1, index.token[:, None]).squeeze(1))
    if metric in NEEDS_WRONG:
        assert index.diff_row is not None and index.diff_answer is not None and index.diff_wrong is not None
        src = wide(logits) if metric == "logit_diff" else logp.exp()
        rows = src[index.diff_row]
        good = rows.gather(1, index.diff_answer[:, None]).squeeze(1)
        bad = rows.gather(1, index.diff_wrong[:, None]).squeeze(1)
        return good - bad
    raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")


def metric_loss(
    metric: str, logits: torch.Tensor, index: AnswerIndex, clean_logp: torch.Tensor | None
) -> torch.Tensor:
    """Scalar loss for attribution: the SUM over examples of ``LOSS_SIGN * value``."""
    return LOSS_SIGN[metric] * metric_values(metric, logits, index, clean_logp).sum()


def answer_exact_match(
    logits: torch.Tensor, tokens: torch.Tensor, answer_len: torch.Tensor, first_token: bool = False
) -> torch.Tensor:
    """[B] bool: greedy exact match, the one accuracy of circuitft (training, evaluation, size curves).

    ``logits`` [n, V] are the logits at the answer positions and ``tokens`` [n] the answer tokens they
    predict, example-major (``answer_len`` [B] rows per example, in order), as
    :meth:`~circuitft.data.pairs.PairBatch.answer_index` lists them. An example is right when the argmax
    equals the answer token at every answer position (torchmetrics' multiclass exact match over the
    padded answers) or, with ``first_token``, at its first answer position only (the prior work's accuracy).
    """
    lengths = answer_len.to(tokens.device)
    n_examples = len(lengths)
    start = torch.cumsum(lengths, 0) - lengths
    example = torch.repeat_interleave(torch.arange(n_examples, device=tokens.device), lengths)
    position = torch.arange(len(tokens), device=tokens.device) - start[example]
    predicted = logits.argmax(-1)
    if first_token:
        keep = position == 0
        example, position, tokens, predicted = example[keep], position[keep], tokens[keep], predicted[keep]
    width = int(position.max()) + 1 if len(position) else 1
    target = torch.full((n_examples, width), PAD_LABEL, dtype=torch.long, device=tokens.device)
    target[example, position] = tokens
    preds = torch.full_like(target, PAD_LABEL)
    preds[example, position] = predicted
    hits = multiclass_exact_match(
        preds,
        target,
        num_classes=logits.shape[-1],
        multidim_average="samplewise",
        ignore_index=PAD_LABEL,
        validate_args=False,
    )
    return hits.bool()
