"""The probe of a CircuitLoRA plan: circuits before and after a short low-rank LoRA run, and the plan record.

:func:`make_plan` takes the untuned (unwrapped) model, finds the task's circuit on a merged frozen copy,
trains a rank-``probe_rank`` adapter for ``probe_steps`` steps on the task's training batches (the batches
the run itself starts with), finds the circuit again, removes the probe adapter (the base weights are never
changed) and turns the two circuits into a plan (:mod:`circuitft.circuitlora.plan`). Everything it draws
from the global RNG happens inside a forked RNG seeded with ``seed``, so the run after it is unaffected.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch
from peft.tuners.lora import LoraLayer
from transformers import PreTrainedModel

from circuitft.circuitlora import plan as P
from circuitft.circuitlora.options import CircuitLoRAOptions
from circuitft.data.batches import StageBatches
from circuitft.data.pairs import PromptPairs
from circuitft.eap import pipeline
from circuitft.eap.answers import answer_loss
from circuitft.eap.graph import Graph
from circuitft.eap.overlap import edge_jaccard
from circuitft.eap.settings import CircuitSettings
from circuitft.models.lora import wrap_lora
from circuitft.models.merge import merged_copy

PLAN_VERSION = 1


def lora_shapes(peft_model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """``{module name in the base model: (in_features, out_features)}`` of every LoRA layer of a peft model."""
    shapes = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            shapes[name.removeprefix("base_model.model.")] = (
                int(module.in_features),
                int(module.out_features),
            )
    return shapes


def probe_settings(opts: CircuitLoRAOptions) -> CircuitSettings:
    """The circuit pipeline's settings of the probe: the options' method, metric, steps, batch size and top
    fraction (selected as given, pruned), without evaluation."""
    return CircuitSettings(
        method=opts.method,
        metric=opts.metric,
        ig_steps=opts.ig_steps,
        batch_size=opts.batch_size,
        top_frac=opts.top_frac,
        baseline_samples=0,
        size_curve="false",
        where="circuit_lora.",
    )


def find_circuit(model: torch.nn.Module, pairs: PromptPairs, opts: CircuitLoRAOptions, device: Any) -> Graph:
    """The task's circuit (scores of every edge + the top ``top_frac``) on a merged frozen copy of ``model``
    (:func:`circuitft.eap.pipeline.find_circuit`, attribution and selection only)."""
    was_training = model.training
    copy = merged_copy(model).to(device)
    model.train(was_training)
    graph = pipeline.find_circuit(copy, pairs, probe_settings(opts), evaluate=False).graph
    del copy
    return graph


def train_probe(
    peft_model: torch.nn.Module,
    train_pairs: PromptPairs,
    batch_size: int,
    data_seed: int,
    steps: int,
    lr: float,
    device: Any,
    autocast: torch.dtype | None = None,
) -> list[float]:
    """``steps`` AdamW steps on the answer tokens of the run's first training batches; returns the losses."""
    batches = StageBatches([train_pairs], [data_seed], [1.0], 0, batch_size, 0, 1)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    peft_model.train()
    losses = []
    device = torch.device(device)
    ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    for k in range(steps):
        b = batches[k]["batch"].to(device)
        with ctx:
            logits = peft_model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits
        loss = answer_loss(logits, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    peft_model.eval()
    return losses


def make_plan(
    model: PreTrainedModel,
    train_pairs: PromptPairs,
    val_pairs: PromptPairs,
    opts: CircuitLoRAOptions,
    *,
    batch_size: int,
    data_seed: int,
    lr: float,
    target_modules: str | list[str] = "auto",
    device: Any = "cpu",
    autocast: torch.dtype | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the probe on the unwrapped ``model`` (left as it was) and return the plan record (JSON-ready)."""
    t0 = time.perf_counter()
    pairs = val_pairs.subset(range(min(opts.n_examples, len(val_pairs))))
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(opts.seed)
        before = find_circuit(model, pairs, opts, device)
        peft_model = wrap_lora(model, opts.probe_rank, 2.0 * opts.probe_rank, 0.0, target_modules)
        try:
            peft_model.to(device)
            probe_lr = opts.probe_lr if opts.probe_lr is not None else lr
            losses = train_probe(
                peft_model, train_pairs, batch_size, data_seed, opts.probe_steps, probe_lr, device, autocast
            )
            after = find_circuit(peft_model, pairs, opts, device)
            shapes = lora_shapes(peft_model)
        finally:
            peft_model.unload()  # the base modules back in place, base weights untouched
            for p in model.parameters():
                p.requires_grad_(False)
    scores = P.layer_scores(before, after, opts.assignment)  # type: ignore[arg-type]
    critical = P.critical_layers(scores, opts.rule, opts.k)  # type: ignore[arg-type]
    record = plan_record(shapes, scores, critical, opts)
    record["probe"] = {
        "steps": opts.probe_steps,
        "rank": opts.probe_rank,
        "lr": probe_lr,
        "task": pairs.task,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "circuit_edges_before": before.count_edges(),
        "circuit_edges_after": after.count_edges(),
        "edge_jaccard": round(float(edge_jaccard(before, after)), 6),
        "n_examples": len(pairs),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    record.update(extra or {})
    return record


def plan_record(
    shapes: dict[str, tuple[int, int]], scores: list[float], critical: list[int], opts: CircuitLoRAOptions
) -> dict[str, Any]:
    """The plan file's content from the module shapes, the layer scores and the critical layers."""
    modules = list(shapes)
    rank_pattern, alpha_pattern = P.rank_patterns(modules, critical, opts.r_critical, opts.alpha_critical)
    ranks = P.module_ranks(modules, opts.r_other, rank_pattern)
    n_plan = P.lora_parameters(shapes, ranks)
    r_equal = P.equal_budget_rank(shapes, n_plan)
    total = sum(scores) or 1.0
    return {
        "version": PLAN_VERSION,
        "n_layers": len(scores),
        "assignment": opts.assignment,
        "rule": opts.rule,
        "k": opts.k if opts.rule == "top_k" else None,
        "threshold": P.mean_plus_std(scores) if opts.rule == "mean_std" else None,
        "layer_scores": scores,
        "layer_shares": [s / total for s in scores],
        "critical_layers": critical,
        "r": opts.r_other,
        "alpha": opts.alpha_other,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "critical_lr_scale": opts.critical_lr_scale,
        "ranks": ranks,
        "parameters": {
            "plan": n_plan,
            "uniform_rank_equal_budget": r_equal,
            "uniform_equal_budget": P.lora_parameters(shapes, r_equal),
            f"uniform_r{opts.r_other}": P.lora_parameters(shapes, opts.r_other),
        },
        "options": opts.to_dict(),
    }
