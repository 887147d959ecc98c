"""optim.param_groups: one optimizer group per learning-rate multiplier."""

from __future__ import annotations

import pytest
import torch

from circuitft.training import optim


def test_param_groups_split_by_scale_and_follow_the_schedule():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = optim.param_groups([("a", a), ("b", b), ("c", c)], 0.1, {"b": 3.0})
    assert [g["lr_scale"] for g in groups] == [1.0, 3.0]
    assert [len(g["params"]) for g in groups] == [2, 1] and groups[1]["params"][0] is b
    opt = torch.optim.AdamW(groups, lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)  # a schedule scales every group alike
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.15])
    assert sched.get_last_lr() == pytest.approx([0.05, 0.15])
