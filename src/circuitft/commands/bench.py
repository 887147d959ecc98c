"""``circuitft bench eap``: time EAP-IG attribution and circuit evaluation against a plain-transformers floor.

The floor is the least any implementation must do, in the same process, on the same model and data:

- attribution floor, per batch: 2 no-grad forwards (clean, corrupted) + ``ig_steps`` forward/backward passes
  with gradients only for the input embeddings (parameters frozen), the KL metric at the answer positions;
- evaluation floor, per batch: 3 no-grad forwards (clean, corrupted, patched-run stand-in).

Both the floor and circuitft compute logits only at the answer positions (``logits_to_keep``) and pass
``use_cache=False``, so the ratio measures the cost of the EAP machinery alone. Data are synthetic token ids
of length ``seq_len`` (clean and corrupted differ in a few positions, one answer token). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

import torch

from circuitft.commands.args import OneLineParser, parse
from circuitft.data.pairs import PromptPairs
from circuitft.data.rows import PromptRow
from circuitft.errors import ConfigError

KEYS = (
    "model", "device", "threads", "batch_size", "seq_len", "batches", "ig_steps", "n_layers", "n_heads",
    "n_kv_heads", "d_model", "n_edges", "eap_seconds", "floor_seconds", "eap_ratio", "eval_seconds",
    "eval_floor_seconds", "eval_ratio", "eval_circuit_edges",
)  # fmt: skip


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
        task="synthetic", rows=rows, clean_ids=clean, corrupted_ids=corrupted,
        attention_mask=torch.ones(n, seq_len, dtype=torch.long),
        prompt_len=torch.full((n,), seq_len - 1), answer_ids=clean[:, -1:].clone(),
        answer_len=torch.ones(n, dtype=torch.long), wrong_ids=None,
    )  # fmt: skip


def floor_attribution(model, pairs: PromptPairs, batch_size: int, ig_steps: int) -> None:
    """Per batch: 2 no-grad forwards + ig_steps forward/backward with gradients for the embeddings only."""
    from circuitft.eap.attribute import kept_logits
    from circuitft.eap.metrics import AnswerIndex, metric_loss

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
    from circuitft.eap.attribute import kept_logits
    from circuitft.eap.metrics import AnswerIndex

    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in pairs.batches(batch_size):
            batch = batch.to(device)
            index = AnswerIndex.from_batch(batch, "kl")
            for ids in (batch.clean_ids, batch.corrupted_ids, batch.clean_ids):
                kept_logits(model, index, input_ids=ids, attention_mask=batch.attention_mask)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run_eap_bench(
    model_spec: str = "smollm2-135m",
    batch_size: int = 6,
    seq_len: int = 25,
    batches: int = 2,
    ig_steps: int = 5,
    repeats: int = 2,
    device: str | None = None,
    circuit_frac: float = 0.05,
) -> dict[str, object]:
    """Run the benchmark and return its record (see module docstring); times are the best of ``repeats``."""
    from circuitft.eap.attribute import analysis_mode, attribute
    from circuitft.eap.evaluate import evaluate
    from circuitft.eap.graph import Graph
    from circuitft.models.loading import load_model

    for opt, value in (
        ("--batch_size", batch_size),
        ("--batches", batches),
        ("--ig_steps", ig_steps),
        ("--repeats", repeats),
    ):
        if value < 1:
            raise ConfigError(f"{opt} must be at least 1, got {value}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(model_spec).model.to(dev).eval()
    pairs = synthetic_pairs(model.config.vocab_size, batch_size * batches, seq_len)
    warm = pairs.subset(range(batch_size))
    graph = Graph.from_model(model)

    def eap() -> None:
        attribute(model, graph, pairs, method="EAP-IG-inputs", metric="kl", ig_steps=ig_steps,
                  batch_size=batch_size, progress=False)  # fmt: skip

    def evaluation() -> None:
        evaluate(model, graph, pairs, metric="kl", batch_size=batch_size, progress=False)

    with analysis_mode(model):
        # warm-up (allocator, kernels), then interleave the measured runs so load changes hit both alike
        floor_attribution(model, warm, batch_size, ig_steps)
        attribute(model, graph, warm, ig_steps=ig_steps, batch_size=batch_size, progress=False)
        times: dict[str, list[float]] = {"floor": [], "eap": [], "eval_floor": [], "eval": []}
        for _ in range(repeats):
            times["floor"].append(_timed(lambda: floor_attribution(model, pairs, batch_size, ig_steps), dev))
            times["eap"].append(_timed(eap, dev))
        # circuit for evaluation: the top circuit_frac of edges by |score| (every destination gets patched)
        real = graph.cfg.real_edge_mask
        k = max(1, int(circuit_frac * graph.n_edges))
        top = graph.scores.abs().masked_fill(~real, -1).flatten().topk(k).indices
        graph.in_graph = torch.zeros_like(real).flatten().index_fill_(0, top, True).view_as(real)
        floor_evaluation(model, warm, batch_size)
        for _ in range(repeats):
            times["eval_floor"].append(_timed(lambda: floor_evaluation(model, pairs, batch_size), dev))
            times["eval"].append(_timed(evaluation, dev))
    best = {key: min(values) for key, values in times.items()}
    cfg = graph.cfg
    return {
        "model": model_spec, "device": str(dev), "threads": torch.get_num_threads(), "batch_size": batch_size,
        "seq_len": seq_len, "batches": batches, "ig_steps": ig_steps, "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads, "n_kv_heads": cfg.groups, "d_model": cfg.d_model, "n_edges": cfg.n_edges,
        "eap_seconds": round(best["eap"], 4), "floor_seconds": round(best["floor"], 4),
        "eap_ratio": round(best["eap"] / best["floor"], 3), "eval_seconds": round(best["eval"], 4),
        "eval_floor_seconds": round(best["eval_floor"], 4),
        "eval_ratio": round(best["eval"] / best["eval_floor"], 3), "eval_circuit_edges": k,
    }  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="circuitft bench", description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["eap"], help="benchmark to run")
    p.add_argument("--model", default="smollm2-135m", help="model spec (default: smollm2-135m)")
    p.add_argument("--batch_size", type=int, default=6)
    p.add_argument("--seq_len", type=int, default=25)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--ig_steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions; the best is reported")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft bench``."""
    args = parse(_parser(), argv)
    if isinstance(args, int):  # --help
        return args
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run_eap_bench(
        args.model, args.batch_size, args.seq_len, args.batches, args.ig_steps, args.repeats, args.device
    )
    print(json.dumps(record))
    return 0
