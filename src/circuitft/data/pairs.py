"""PromptPairs: task rows tokenized once, validated, and shared by training and attribution.

Every sequence is ``[BOS] prompt answer`` (the answer teacher-forced), right-padded. The logits at position
``prompt_len - 1 + j`` predict answer token ``j``. Training puts its loss on exactly those positions and
EAP-IG scores exactly those positions, so the two halves cannot drift to different formats.
The corrupted sequence is the corrupted prompt followed by the *clean* answer tokens; clean and corrupted
prompts must tokenize to the same length so one attention mask serves both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from circuitft.data.rows import PromptRow
from circuitft.errors import DataError

if TYPE_CHECKING:  # not at run time: `circuitft fit --help` must not import transformers
    from transformers import PreTrainedTokenizerBase

PAD_LABEL = -100


@dataclass
class PairBatch:
    """A batch of prompt pairs, trimmed to its longest sequence."""

    clean_ids: torch.Tensor  # [B, T] long
    corrupted_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, shared by clean and corrupted
    prompt_len: torch.Tensor  # [B] long, BOS included
    answer_ids: torch.Tensor  # [B, A] long, padded with PAD_LABEL
    answer_len: torch.Tensor  # [B] long
    wrong_ids: torch.Tensor | None  # [B, A'] long, padded with PAD_LABEL, or None

    def __len__(self) -> int:
        return self.clean_ids.shape[0]

    def to(self, device: torch.device | str) -> PairBatch:
        """The batch on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PairBatch(*(move(getattr(self, f)) for f in self.__dataclass_fields__))

    def answer_index(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat ``(example, position, token)`` of every answer token; logits[example, position] predict it."""
        j = torch.arange(self.answer_ids.shape[1], device=self.answer_ids.device)
        valid = j[None, :] < self.answer_len[:, None]
        ex, jj = valid.nonzero(as_tuple=True)
        return ex, self.prompt_len[ex] - 1 + jj, self.answer_ids[ex, jj]

    def labels(self) -> torch.Tensor:
        """Causal-LM labels for ``clean_ids``: the answer tokens, PAD_LABEL everywhere else."""
        labels = torch.full_like(self.clean_ids, PAD_LABEL)
        ex, pos, tok = self.answer_index()
        labels[ex, pos + 1] = tok
        return labels


@dataclass
class PromptPairs:
    """All rows of one task, tokenized and validated (see module docstring)."""

    task: str
    rows: list[PromptRow]
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: torch.Tensor
    answer_ids: torch.Tensor
    answer_len: torch.Tensor
    wrong_ids: torch.Tensor | None
    n_dropped: int = 0  # rows dropped because clean/corrupted token counts differed
    n_identical: int = 0  # rows dropped because clean and corrupted token ids were the same

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, index: Sequence[int] | slice | torch.Tensor) -> PairBatch:
        """Rows ``index`` as a :class:`PairBatch`, trimmed to the longest sequence and answer."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.long)
        mask = self.attention_mask[index]
        t = int(mask.sum(1).max()) if len(index) else 0
        a = int(self.answer_len[index].max()) if len(index) else 0
        wrong = None
        if self.wrong_ids is not None:
            wrong = self.wrong_ids[index]
            wrong = wrong[:, : int((wrong != PAD_LABEL).sum(1).max())]
        return PairBatch(
            clean_ids=self.clean_ids[index, :t],
            corrupted_ids=self.corrupted_ids[index, :t],
            attention_mask=mask[:, :t],
            prompt_len=self.prompt_len[index],
            answer_ids=self.answer_ids[index, :a],
            answer_len=self.answer_len[index],
            wrong_ids=wrong,
        )

    def batches(self, batch_size: int) -> Iterator[PairBatch]:
        """Consecutive batches in row order (the last one may be smaller)."""
        if batch_size <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.batch(slice(start, start + batch_size))

    def subset(self, index: Sequence[int]) -> PromptPairs:
        """A new PromptPairs holding rows ``index``."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return PromptPairs(
            self.task,
            [self.rows[i] for i in idx.tolist()],
            pick(self.clean_ids),
            pick(self.corrupted_ids),
            pick(self.attention_mask),
            pick(self.prompt_len),
            pick(self.answer_ids),
            pick(self.answer_len),
            pick(self.wrong_ids),
            self.n_dropped,
            self.n_identical,
        )

    @property
    def max_len(self) -> int:
        """Longest sequence (prompt + answer) in tokens."""
        return int(self.attention_mask.sum(1).max()) if len(self) else 0


def default_prepend_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Prepend BOS when the tokenizer has one (as the reference EAP-IG library does)."""
    return tokenizer.bos_token_id is not None


def tokenize_pairs(
    rows: Sequence[PromptRow],
    tokenizer: PreTrainedTokenizerBase,
    task: str = "task",
    prepend_bos: bool | None = None,
    on_mismatch: Literal["drop", "error"] = "drop",
    source: str | None = None,
) -> PromptPairs:
    """Tokenize and validate ``rows`` into :class:`PromptPairs`.

    Rows whose clean and corrupted prompts tokenize to different lengths are dropped (counted in
    ``n_dropped``) or, with ``on_mismatch="error"``, raise a :class:`DataError` naming the row
    (1-based data row, as in a CSV file without its header) and ``source``. Rows whose clean and corrupted
    prompts tokenize to the same ids carry no signal (every attribution score is 0): they are dropped and
    counted in ``n_identical``, and a DataError is raised when no row is left.
    """
    where = f"{source}: " if source else ""
    if not rows:
        raise DataError(f"{where}no rows for task {task!r}")
    if prepend_bos is None:
        prepend_bos = default_prepend_bos(tokenizer)
    if prepend_bos and tokenizer.bos_token_id is None:
        raise DataError(f"{where}prepend_bos is true but the tokenizer has no BOS token")
    bos = [tokenizer.bos_token_id] if prepend_bos else []

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    kept: list[PromptRow] = []
    seqs: list[tuple[list[int], list[int], int, list[int], list[int] | None]] = []
    dropped = identical = 0
    for i, row in enumerate(rows, start=1):
        clean, corrupted = bos + ids(row.clean), bos + ids(row.corrupted)
        answer = ids(row.answer)
        if not answer:
            raise DataError(f"{where}row {i}: column 'answer' is empty or tokenizes to nothing")
        if len(clean) != len(corrupted):
            if on_mismatch == "error":
                raise DataError(
                    f"{where}row {i}: clean and corrupted prompts tokenize to different lengths "
                    f"({len(clean)} vs {len(corrupted)} tokens)"
                )
            dropped += 1
            continue
        if clean == corrupted:
            identical += 1
            continue
        wrong = ids(row.wrong) if row.wrong else None
        kept.append(row)
        seqs.append((clean, corrupted, len(clean), answer, wrong))
    if not kept and identical:
        raise DataError(
            f"{where}none of the {len(rows)} rows of task {task!r} is usable: {identical} have clean and "
            f"corrupted prompts with identical token ids, {dropped} differ in token length"
        )
    if not kept:
        raise DataError(
            f"{where}all {len(rows)} rows of task {task!r} have clean/corrupted length mismatches"
        )

    n, t = len(kept), max(p + len(a) for _, _, p, a, _ in seqs)
    a_max = max(len(a) for *_, a, _ in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean_ids = torch.full((n, t), pad, dtype=torch.long)
    corrupted_ids = torch.full((n, t), pad, dtype=torch.long)
    attention_mask = torch.zeros((n, t), dtype=torch.long)
    answer_ids = torch.full((n, a_max), PAD_LABEL, dtype=torch.long)
    has_wrong = any(s[4] for s in seqs)
    w_max = max((len(s[4]) for s in seqs if s[4]), default=1)
    wrong_ids = torch.full((n, w_max), PAD_LABEL, dtype=torch.long) if has_wrong else None
    for r, (clean, corrupted, p, answer, wrong) in enumerate(seqs):
        length = p + len(answer)
        clean_ids[r, :length] = torch.tensor(clean + answer)
        corrupted_ids[r, :length] = torch.tensor(corrupted + answer)
        attention_mask[r, :length] = 1
        answer_ids[r, : len(answer)] = torch.tensor(answer)
        if wrong_ids is not None and wrong:
            wrong_ids[r, : len(wrong)] = torch.tensor(wrong)
    return PromptPairs(
        task=task,
        rows=kept,
        clean_ids=clean_ids,
        corrupted_ids=corrupted_ids,
        attention_mask=attention_mask,
        prompt_len=torch.tensor([s[2] for s in seqs]),
        answer_ids=answer_ids,
        answer_len=torch.tensor([len(s[3]) for s in seqs]),
        wrong_ids=wrong_ids,
        n_dropped=dropped,
        n_identical=identical,
    )


def concat_pairs(parts: Sequence[PromptPairs], task: str) -> PromptPairs:
    """The rows of ``parts`` one after another in one PromptPairs (padded to the widest part)."""
    if not parts:
        raise DataError(f"no rows for task {task!r}")
    pad_ids = lambda t, w, v: torch.nn.functional.pad(t, (0, w - t.shape[1]), value=v)  # noqa: E731
    t = max(p.clean_ids.shape[1] for p in parts)
    a = max(p.answer_ids.shape[1] for p in parts)
    has_wrong = any(p.wrong_ids is not None for p in parts)
    w = max((p.wrong_ids.shape[1] for p in parts if p.wrong_ids is not None), default=1)

    def wrong(p: PromptPairs) -> torch.Tensor:
        if p.wrong_ids is None:
            return torch.full((len(p), w), PAD_LABEL, dtype=torch.long)
        return pad_ids(p.wrong_ids, w, PAD_LABEL)

    # the id under padding is never read (masked, no label)
    return PromptPairs(
        task=task,
        rows=[r for p in parts for r in p.rows],
        clean_ids=torch.cat([pad_ids(p.clean_ids, t, 0) for p in parts]),
        corrupted_ids=torch.cat([pad_ids(p.corrupted_ids, t, 0) for p in parts]),
        attention_mask=torch.cat([pad_ids(p.attention_mask, t, 0) for p in parts]),
        prompt_len=torch.cat([p.prompt_len for p in parts]),
        answer_ids=torch.cat([pad_ids(p.answer_ids, a, PAD_LABEL) for p in parts]),
        answer_len=torch.cat([p.answer_len for p in parts]),
        wrong_ids=torch.cat([wrong(p) for p in parts]) if has_wrong else None,
        n_dropped=sum(p.n_dropped for p in parts),
    )
