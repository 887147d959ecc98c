"""top_k: the k largest, largest first, ties in position order, NaN as -inf (a stable descending sort's head)."""

from __future__ import annotations

import math

import torch

from circuitft.eap.topk import top_k, top_k_mask


def reference(values: torch.Tensor, k: int) -> list[int]:
    flat = values.flatten()
    flat = torch.where(flat.isnan(), -math.inf, flat)
    return torch.sort(flat, descending=True, stable=True).indices[:k].tolist()


def test_top_k_equals_a_stable_descending_sort_with_ties_and_nan():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (7, 9), generator=gen).float()  # many ties
    values[0, 3] = values[4, 4] = math.nan
    values[2, 2] = -math.inf
    for k in (1, 4, 10, 40, 61, 62, 63, 100):
        assert top_k(values, k).tolist() == reference(values, k), k
    ties = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 3.0])
    assert top_k(ties, 3).tolist() == [1, 2, 4]  # equal values: the earlier positions win
    assert top_k(ties, 0).tolist() == []


def test_top_k_mask_marks_the_chosen_entries():
    values = torch.tensor([[0.5, -2.0, 0.1], [3.0, 0.5, 0.2]])
    mask = top_k_mask(values, 3)
    assert mask.shape == values.shape
    assert mask.tolist() == [[True, False, False], [True, True, False]]
