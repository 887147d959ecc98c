"""The CircuitLoRA plan, as pure functions of two circuits and the adapter's module shapes.

1. :func:`edge_deltas`: per edge, ``|score after - score before|`` where the edge is in both circuits,
   ``|score|`` of the one circuit it is in otherwise, 0 where it is in neither.
2. :func:`layer_scores`: ``D_L``, the sum of the deltas of the edges assigned to layer ``L``. An edge goes to
   the layer of its ``destination`` node (default; ``logits`` -> the last layer), of its ``source`` node
   (the prior work's choice; ``input`` -> layer 0, so every ``input->*`` edge lands on layer 0), or half to
   each (``both``).
3. :func:`critical_layers`: the ``k`` highest ``D_L`` (ties: the lower layer), or every layer with
   ``D_L >= mean + std`` (population standard deviation).
4. :func:`rank_patterns`: the critical layers' LoRA modules get the high rank/alpha, all others the low one
   (peft ``rank_pattern`` / ``alpha_pattern`` keyed by full module name).
5. :func:`lora_parameters` / :func:`equal_budget_rank`: trainable parameter counts of an adapter, and the
   uniform rank whose count is closest to the plan's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from circuitft.eap.graph import Graph, GraphConfig
from circuitft.errors import ConfigError

Assignment = Literal["destination", "source", "both"]
ASSIGNMENTS = ("destination", "source", "both")
Rule = Literal["top_k", "mean_std"]
RULES = ("top_k", "mean_std")
_LAYER = re.compile(r"\.(\d+)\.")


def edge_deltas(before: Graph, after: Graph) -> torch.Tensor:
    """[n_forward, n_backward] float64 delta of every edge (see module docstring, step 1)."""
    if not before.cfg.same_edges(after.cfg):
        raise ConfigError(f"circuits of different shapes: {before.cfg.describe()} vs {after.cfg.describe()}")
    real = before.cfg.real_edge_mask
    s0, s1 = before.scores.detach().cpu().double(), after.scores.detach().cpu().double()
    in0, in1 = before.in_graph.cpu() & real, after.in_graph.cpu() & real
    delta = torch.zeros_like(s0)
    both = in0 & in1
    delta[both] = (s1 - s0).abs()[both]
    delta[in0 & ~in1] = s0.abs()[in0 & ~in1]
    delta[in1 & ~in0] = s1.abs()[in1 & ~in0]
    return delta


def source_layers(cfg: GraphConfig) -> torch.Tensor:
    """[n_forward] long: layer of each source node (``input`` -> 0)."""
    layers = torch.zeros(cfg.n_forward, dtype=torch.long)
    layers[1:] = torch.arange(cfg.n_layers).repeat_interleave(cfg.n_heads + 1)
    return layers


def destination_layers(cfg: GraphConfig) -> torch.Tensor:
    """[n_backward] long: layer of each destination (``logits`` -> the last layer)."""
    layers = torch.empty(cfg.n_backward, dtype=torch.long)
    layers[:-1] = torch.arange(cfg.n_layers).repeat_interleave(cfg.layer_width)
    layers[-1] = cfg.n_layers - 1
    return layers


def layer_scores(before: Graph, after: Graph, assignment: Assignment = "destination") -> list[float]:
    """``D_L`` for every layer ``L`` (see module docstring, steps 1-2)."""
    if assignment not in ASSIGNMENTS:
        raise ConfigError(f"assignment must be one of {', '.join(ASSIGNMENTS)}, got {assignment!r}")
    cfg = before.cfg
    delta = edge_deltas(before, after)
    scores = torch.zeros(cfg.n_layers, dtype=torch.float64)
    by_source = delta.sum(dim=1)  # [n_forward]
    by_destination = delta.sum(dim=0)  # [n_backward]
    share = {"destination": (0.0, 1.0), "source": (1.0, 0.0), "both": (0.5, 0.5)}[assignment]
    if share[0]:
        scores.index_add_(0, source_layers(cfg), share[0] * by_source)
    if share[1]:
        scores.index_add_(0, destination_layers(cfg), share[1] * by_destination)
    return [float(x) for x in scores]


def critical_layers(scores: Sequence[float], rule: Rule = "top_k", k: int = 5) -> list[int]:
    """Sorted critical layers: the ``k`` highest scores (ties: lower layer) or ``score >= mean + std``."""
    if rule == "top_k":
        if not 1 <= k <= len(scores):
            raise ConfigError(f"k must be between 1 and the number of layers ({len(scores)}), got {k}")
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return sorted(order[:k])
    if rule == "mean_std":
        return [i for i, s in enumerate(scores) if s >= mean_plus_std(scores)]
    raise ConfigError(f"critical rule must be one of {', '.join(RULES)}, got {rule!r}")


def mean_plus_std(scores: Sequence[float]) -> float:
    """Mean plus population standard deviation of ``scores``."""
    mean = sum(scores) / len(scores)
    return mean + math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def module_layer(name: str) -> int:
    """Layer index of a module from its dotted name: the first numeric component (``model.layers.3.mlp``)."""
    found = _LAYER.search(f".{name}.")
    if found is None:
        raise ConfigError(f"LoRA module {name!r} has no layer number in its name")
    return int(found.group(1))


def rank_patterns(
    modules: Sequence[str],
    critical: Sequence[int],
    r_critical: int,
    alpha_critical: float,
) -> tuple[dict[str, int], dict[str, float]]:
    """peft ``rank_pattern`` and ``alpha_pattern``: every module of a critical layer, by full name."""
    chosen = set(critical)
    names = [m for m in modules if module_layer(m) in chosen]
    return {m: int(r_critical) for m in names}, {m: float(alpha_critical) for m in names}


def module_ranks(modules: Sequence[str], rank: int, pattern: Mapping[str, int]) -> dict[str, int]:
    """Rank of every LoRA module: its ``pattern`` entry, else ``rank``."""
    return {m: int(pattern.get(m, rank)) for m in modules}


def lora_parameters(shapes: Mapping[str, tuple[int, int]], ranks: Mapping[str, int] | int) -> int:
    """Trainable LoRA parameters: ``r * (in + out)`` summed over modules (``shapes``: name -> (in, out))."""
    return sum(
        (ranks if isinstance(ranks, int) else ranks[m]) * (fan_in + fan_out)
        for m, (fan_in, fan_out) in shapes.items()
    )


def equal_budget_rank(shapes: Mapping[str, tuple[int, int]], budget: int) -> int:
    """The uniform rank (>= 1) whose parameter count is closest to ``budget`` (ties: the lower rank)."""
    per_rank = lora_parameters(shapes, 1)
    low = max(1, budget // per_rank)
    return min((low, low + 1), key=lambda r: (abs(r * per_rank - budget), r))
