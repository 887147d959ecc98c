"""Per-task learning-rate policies are pure functions of the global step."""

from __future__ import annotations

import pytest
import torch

from circuitft.errors import ConfigError
from circuitft.training import optim


def test_task_of_step_boundaries():
    steps = [3, 2, 4]
    got = [optim.task_of_step(s, steps) for s in range(9)]
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3)]
    assert optim.task_of_step(20, steps)[0] == 2  # past the end stays on the last task


def test_later_tasks_scaled_or_reset():
    steps = [2, 2]
    assert [optim.lr_multiplier(s, steps, later_tasks_lr_scale=0.1) for s in range(4)] == [1, 1, 0.1, 0.1]
    assert [optim.lr_multiplier(s, steps) for s in range(4)] == [1, 1, 1, 1]


def test_task_lr_replaces_base_and_scale():
    steps = [2, 2, 2]
    got = [optim.lr_multiplier(s, steps, "constant", 0, 0.1, [None, 2e-4, None], 1e-3) for s in range(6)]
    assert got == pytest.approx([1, 1, 0.2, 0.2, 0.1, 0.1])


def test_linear_schedule_restarts_each_task_with_warmup():
    steps = [4, 4]
    got = [optim.lr_multiplier(s, steps, "linear", warmup_steps=1) for s in range(8)]
    assert got[0] == 1.0 and got[4] == 1.0  # warm-up of one step at each task start
    assert got[1:4] == pytest.approx([1.0, 2 / 3, 1 / 3]) and got[5:8] == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_clear_state_equals_fresh_adamw():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (p**2).sum().backward()
        opt.step()
    optim.clear_state(opt)
    q = torch.nn.Parameter(p.detach().clone())
    fresh = torch.optim.AdamW([q], lr=0.1)
    for o, t in ((opt, p), (fresh, q)):
        o.zero_grad()
        (t**2).sum().backward()
        o.step()
    assert torch.equal(p, q)


@pytest.mark.parametrize(
    "args, word",
    [
        ((0.0, 0, "constant", 0, 1.0), "lr"),
        ((1e-3, 0, "step", 0, 1.0), "lr_schedule"),
        ((1e-3, 0, "constant", -1, 1.0), "warmup"),
        ((1e-3, 0, "constant", 0, 0.0), "later_tasks"),
    ],
)
def test_bad_policy_is_one_line(args, word):
    with pytest.raises(ConfigError, match=word):
        optim.check_policy(*args)
