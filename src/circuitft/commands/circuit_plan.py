"""The line ``circuitft circuit`` prints before its work: what it will run and roughly how long it will take.

The estimate counts forward-pass equivalents per batch of rows (a backward pass costs about two forwards, a
hooked pass about 1.3 plain ones) and times a plain forward pass of the first batch on the loaded model:

- attribution: EAP-IG (``ig_steps`` stacked forward/backward passes plus a clean and a corrupted run),
  EAP (one forward/backward pass plus the two runs), ``exact`` (one patched run per edge);
- evaluation of the circuit: a clean, a corrupted and a patched run;
- the random baseline and the size curve: a clean and a corrupted run plus one patched run per circuit
  (``auto`` evaluates about half the curve's sizes).

It is a rough figure (within a factor of about two): the first forward pass is the slowest, and attribution's
memory traffic grows with the number of edges.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from circuitft.eap.settings import CircuitSettings
from circuitft.sweeps.plan import duration

HOOKED = 1.3  # a pass with EAP hooks against a plain forward pass
BACKWARD = 2.0  # a backward pass against a forward pass


def passes_per_batch(
    method: str | None, ig_steps: int, n_edges: int, n_random: int, n_sizes: int, one_side: bool
) -> dict[str, float]:
    """Forward-pass equivalents per batch of each phase: ``attribute`` (0 with a saved graph), ``evaluate``,
    ``references`` (the random baseline and the size curve)."""
    if method is None:
        attribute = 0.0
    elif method == "exact":
        attribute = 2 + n_edges * HOOKED
    elif method == "EAP":
        attribute = 2 + (1 + BACKWARD) * HOOKED
    else:
        attribute = 2 + ig_steps * (1 + BACKWARD) * HOOKED
    sizes = (n_sizes + 1) // 2 if one_side else n_sizes
    circuits = n_random + sizes
    return {
        "attribute": attribute,
        "evaluate": 2 + HOOKED,
        "references": 2 + circuits * HOOKED if circuits else 0.0,
    }


def forward_seconds(model: torch.nn.Module, pairs: Any, batch_size: int, device: Any) -> float:
    """Seconds of one plain forward pass of the first batch of ``pairs`` (no gradient; the faster of two, as the
    first pays for warming up)."""
    batch = next(iter(pairs.batches(batch_size))).to(device)
    times = []
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask)
            times.append(time.perf_counter() - start)
    return min(times)


def start_line(
    model: torch.nn.Module,
    n_edges: int,
    pairs: Any,
    settings: CircuitSettings,
    saved: Path | None,
    device: Any,
) -> str:
    """``circuit: EAP-IG-inputs (5 steps) over 70651 edges on 24 rows (3 batches of 8), ...: about 3 min``;
    ``saved``: the graph file evaluated instead of attributing (None: attribution)."""
    batch_size, ig_steps, n_random = settings.batch_size, settings.ig_steps, settings.baseline_samples
    method = None if saved is not None else settings.attribution_method
    n_sizes, one_side = len(settings.curve), settings.one_sided
    batches = -(-len(pairs) // batch_size)
    per = passes_per_batch(method, ig_steps, n_edges, n_random, n_sizes, one_side)
    seconds = forward_seconds(model, pairs, batch_size, device) * batches * sum(per.values())
    if method is None:
        what = f"evaluating the circuit of {saved}"
    else:
        steps = f" ({ig_steps} steps)" if "IG" in method else ""
        what = f"{method}{steps} over {n_edges} edges"
    then = ["evaluation"]
    if n_random:
        then.append(f"a random baseline of {n_random} circuits")
    if n_sizes:
        then.append(f"a size curve of {'up to ' if one_side else ''}{n_sizes} sizes")
    return (
        f"circuit: {what} on {len(pairs)} rows ({batches} batches of {batch_size}), then "
        f"{', '.join(then[:-1]) + ' and ' + then[-1] if len(then) > 1 else then[0]}: about {duration(seconds)}"
    )


__all__ = ["forward_seconds", "passes_per_batch", "start_line"]
