"""Timing EAP-IG attribution and circuit evaluation against a plain-transformers floor, and LoRA training
steps, on one model (``circuitft bench eap`` prints :func:`run_eap_bench`'s record; ``benchmarks/`` scripts
call the rest).


The floor is the least any implementation must do, in the same process, on the same model and data:

- attribution floor, per batch: 2 no-grad forwards (clean, corrupted) + ``ig_steps`` forward/backward passes
  with gradients only for the input embeddings (parameters frozen), the KL metric at the answer positions;
- evaluation floor, per batch: 3 no-grad forwards (clean, corrupted, patched-run stand-in).

Both the floor and circuitft compute logits only at the answer positions (``logits_to_keep``) and pass
``use_cache=False``, so the ratio measures the cost of the EAP machinery alone. Data are synthetic token ids
of length ``seq_len`` (clean and corrupted differ in a few positions, one answer token). The floor runs the
IG steps one at a time as a plain implementation would; circuitft may do less (stacked steps, the corrupted
activations taken from step k = 0), so ratios below 1 are possible.

Floor and circuitft runs alternate, and each figure is the best of ``--repeats``. Prints ONE JSON line (wall
time ratios ``eap_ratio`` / ``eval_ratio``, and the same in process CPU time, ``*_ratio_cpu``, which other
jobs on a busy machine disturb far less with one thread) and a one-line summary on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from circuitft.data.pairs import PromptPairs
from circuitft.data.rows import PromptRow
from circuitft.dtypes import dtype_name
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.answers import answer_loss
from circuitft.eap.attribute import analysis_mode, attribute, kept_logits
from circuitft.eap.evaluate import evaluate
from circuitft.eap.graph import Graph
from circuitft.eap.metrics import AnswerIndex, metric_loss
from circuitft.eap.topk import top_k
from circuitft.errors import ConfigError
from circuitft.models import DEFAULT_MODEL
from circuitft.models.loading import load_model

KEYS = (
    "model",
    "device",
    "threads",
    "batch_size",
    "seq_len",
    "batches",
    "ig_steps",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "d_model",
    "n_edges",
    "eap_seconds",
    "floor_seconds",
    "eap_ratio",
    "eval_seconds",
    "eval_floor_seconds",
    "eval_ratio",
    "eval_circuit_edges",
    "dtype",
    "eap_seconds_per_100_batches",
    "eval_seconds_per_100_batches",
    "eap_peak_gib",
    "floor_peak_gib",
    "eap_ratio_cpu",
    "eval_ratio_cpu",
)


def synthetic_pairs(vocab_size: int, n: int, seq_len: int, n_changed: int = 3, seed: int = 0) -> PromptPairs:
    """``n`` random sequences of ``seq_len`` tokens; the corrupted prompt differs in ``n_changed`` positions."""
    if seq_len < 3:
        raise ConfigError(f"--seq_len must be at least 3, got {seq_len}")
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(10, vocab_size, (n, seq_len), generator=g)
    corrupted = clean.clone()
    for row in range(n):
        where = (
            torch.randperm(seq_len - 2, generator=g)[:n_changed] + 1
        )  # keep the first token and the answer
        corrupted[row, where] = torch.randint(10, vocab_size, (len(where),), generator=g)
    rows = [PromptRow(f"clean {i}", f"corrupted {i}", "answer") for i in range(n)]
    return PromptPairs(
        task="synthetic",
        rows=rows,
        clean_ids=clean,
        corrupted_ids=corrupted,
        attention_mask=torch.ones(n, seq_len, dtype=torch.long),
        prompt_len=torch.full((n,), seq_len - 1),
        answer_ids=clean[:, -1:].clone(),
        answer_len=torch.ones(n, dtype=torch.long),
        wrong_ids=None,
    )


def floor_attribution(model, pairs: PromptPairs, batch_size: int, ig_steps: int) -> None:
    """Per batch: 2 no-grad forwards + ig_steps forward/backward with gradients for the embeddings only."""
    embed = model.get_input_embeddings()
    device = next(model.parameters()).device
    for batch in pairs.batches(batch_size):
        batch = batch.to(device)
        index = AnswerIndex.from_batch(batch, "kl")
        mask = batch.attention_mask
        with torch.no_grad():
            kept_logits(model, index, input_ids=batch.corrupted_ids, attention_mask=mask)
            clean = kept_logits(model, index, input_ids=batch.clean_ids, attention_mask=mask)
            clean_logp = torch.log_softmax(clean.float(), -1)
            e, e_corr = embed(batch.clean_ids), embed(batch.corrupted_ids)
        for k in range(ig_steps):
            x = (e_corr + (k / ig_steps) * (e - e_corr)).requires_grad_(True)
            logits = kept_logits(model, index, inputs_embeds=x, attention_mask=mask)
            metric_loss("kl", logits, index, clean_logp).backward()


def floor_evaluation(model, pairs: PromptPairs, batch_size: int) -> None:
    """Per batch: 3 no-grad forwards."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in pairs.batches(batch_size):
            batch = batch.to(device)
            index = AnswerIndex.from_batch(batch, "kl")
            for ids in (batch.clean_ids, batch.corrupted_ids, batch.clean_ids):
                kept_logits(model, index, input_ids=ids, attention_mask=batch.attention_mask)


def _timed(fn: Callable[[], object], device: torch.device, cpu: list[float] | None = None) -> float:
    """Wall seconds of ``fn()``; with ``cpu``, also appends the process's CPU seconds (all threads) to it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def run_eap_bench(
    model_spec: str = DEFAULT_MODEL,
    batch_size: int = 6,
    seq_len: int = 25,
    batches: int = 2,
    ig_steps: int = 5,
    repeats: int = 2,
    device: str | None = None,
    circuit_frac: float = DEFAULT_TOP_FRAC,
    model: torch.nn.Module | None = None,
) -> dict[str, object]:
    """Run the benchmark and return its record (see module docstring); times are the best of ``repeats``.

    ``model``: an already built model (e.g. :func:`shaped_model`) instead of loading ``model_spec``.
    """
    for opt, value in (
        ("--batch_size", batch_size),
        ("--batches", batches),
        ("--ig_steps", ig_steps),
        ("--repeats", repeats),
    ):
        if value < 1:
            raise ConfigError(f"{opt} must be at least 1, got {value}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = (model if model is not None else load_model(model_spec).model).to(dev).eval()
    pairs = synthetic_pairs(model.config.vocab_size, batch_size * batches, seq_len)
    warm = pairs.subset(range(batch_size))
    graph = Graph.from_model(model)

    def eap() -> None:
        attribute(
            model,
            graph,
            pairs,
            method="EAP-IG-inputs",
            metric="kl",
            ig_steps=ig_steps,
            batch_size=batch_size,
            progress=False,
        )

    def evaluation() -> None:
        evaluate(model, graph, pairs, metric="kl", batch_size=batch_size, progress=False)

    with analysis_mode(model):
        # warm-up (allocator, kernels), then interleave the measured runs so load changes hit both alike
        floor_attribution(model, warm, batch_size, ig_steps)
        attribute(model, graph, warm, ig_steps=ig_steps, batch_size=batch_size, progress=False)
        times: dict[str, list[float]] = {"floor": [], "eap": [], "eval_floor": [], "eval": []}
        cpu_times: dict[str, list[float]] = {key: [] for key in times}  # process CPU time, for busy machines
        peak = _reset_peak(dev)
        for _ in range(repeats):
            times["floor"].append(
                _timed(lambda: floor_attribution(model, pairs, batch_size, ig_steps), dev, cpu_times["floor"])
            )
            peak["floor"] = max(peak["floor"], _peak(dev))
            _reset_peak(dev)
            times["eap"].append(_timed(eap, dev, cpu_times["eap"]))
            peak["eap"] = max(peak["eap"], _peak(dev))
            _reset_peak(dev)
        # circuit for evaluation: the top circuit_frac of edges by |score| (every destination gets patched)
        real = graph.cfg.real_edge_mask
        k = max(1, int(circuit_frac * graph.n_edges))
        top = top_k(graph.scores.abs().masked_fill(~real, -1), k)
        graph.in_graph = torch.zeros_like(real).flatten().index_fill_(0, top, True).view_as(real)
        floor_evaluation(model, warm, batch_size)
        for _ in range(repeats):
            times["eval_floor"].append(
                _timed(lambda: floor_evaluation(model, pairs, batch_size), dev, cpu_times["eval_floor"])
            )
            times["eval"].append(_timed(evaluation, dev, cpu_times["eval"]))
    best = {key: min(values) for key, values in times.items()}
    best_cpu = {key: min(values) for key, values in cpu_times.items()}
    cfg = graph.cfg
    return {
        "model": model_spec,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "batches": batches,
        "ig_steps": ig_steps,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.groups,
        "d_model": cfg.d_model,
        "n_edges": cfg.n_edges,
        "eap_seconds": round(best["eap"], 4),
        "floor_seconds": round(best["floor"], 4),
        "eap_ratio": round(best["eap"] / best["floor"], 3),
        "eval_seconds": round(best["eval"], 4),
        "eval_floor_seconds": round(best["eval_floor"], 4),
        "eval_ratio": round(best["eval"] / best["eval_floor"], 3),
        "eval_circuit_edges": k,
        "dtype": dtype_name(next(model.parameters()).dtype),
        "eap_seconds_per_100_batches": round(100 * best["eap"] / batches, 3),
        "eval_seconds_per_100_batches": round(100 * best["eval"] / batches, 3),
        "eap_peak_gib": round(peak["eap"] / 2**30, 3),
        "floor_peak_gib": round(peak["floor"] / 2**30, 3),
        # the same ratios in process CPU time (robust to other jobs with 1 thread; not a GPU measure)
        "eap_ratio_cpu": round(best_cpu["eap"] / best_cpu["floor"], 3),
        "eval_ratio_cpu": round(best_cpu["eval"] / best_cpu["eval_floor"], 3),
    }


def _reset_peak(device: torch.device) -> dict[str, int]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    return {"floor": 0, "eap": 0}


def _peak(device: torch.device) -> int:
    """Peak GPU memory allocated since the last reset (bytes; 0 on CPU)."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0


SHAPES: dict[str, dict[str, int]] = {
    # Pythia-1.4B: 24 layers, 16 heads, d_model 2048, MLP 8192, parallel attention/MLP, rotary on 1/4 dims
    "pythia-1.4b": dict(
        num_hidden_layers=24, num_attention_heads=16, hidden_size=2048, intermediate_size=8192
    ),
    "tiny": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=256, vocab_size=512
    ),
}


def shaped_model(
    shape: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
):
    """A GPT-NeoX causal LM of a known shape (:data:`SHAPES`) with random weights: built from a config, on
    ``device`` directly, nothing downloaded. Speed does not depend on the weights' values."""
    if shape not in SHAPES:
        raise ConfigError(f"unknown model shape {shape!r}; known: {', '.join(SHAPES)}")
    cfg = GPTNeoXConfig(
        **SHAPES[shape],
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(cfg)
    model.config.architectures = ["GPTNeoXForCausalLM"]
    return model.to(dtype).eval()


def run_train_bench(
    model: torch.nn.Module,
    batch_size: int = 40,
    seq_len: int = 25,
    steps: int = 10,
    warmup: int = 3,
    lora_r: int = 32,
    precision: str = "bf16-mixed",
) -> dict[str, object]:
    """LoRA training steps per second: peft LoRA (r ``lora_r``, alpha 2r, every linear layer of the blocks),
    AdamW, the answer-token loss, autocast as Lightning's ``precision`` (``bf16-mixed`` / ``32-true``);
    timed after ``warmup`` steps. Also times a no-grad forward of the same batch (validation cost)."""

    if precision not in ("bf16-mixed", "32-true"):
        raise ConfigError(f"--precision must be bf16-mixed or 32-true, got {precision!r}")
    dev = next(model.parameters()).device
    lora = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear"))
    lora.train()
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)
    batch = next(synthetic_pairs(model.config.vocab_size, batch_size, seq_len).batches(batch_size)).to(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step() -> None:
        with autocast:
            logits = lora(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits
        answer_loss(logits, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad(), autocast:
            lora(input_ids=batch.clean_ids, attention_mask=batch.attention_mask, logits_to_keep=1)

    for _ in range(warmup):
        step()
    seconds = _timed(lambda: [step() for _ in range(steps)], dev)
    forward()
    fwd = _timed(lambda: [forward() for _ in range(steps)], dev) / steps
    lora.unload()  # restore the plain model
    return {
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lora_r": lora_r,
        "precision": precision,
        "steps": steps,
        "train_steps_per_second": round(steps / seconds, 3),
        "train_seconds_per_step": round(seconds / steps, 4),
        "forward_seconds_per_batch": round(fwd, 4),
        "peak_gib": round(_peak(dev) / 2**30, 3),
    }
