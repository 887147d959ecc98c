"""Circuit evaluation by patching: every edge outside the circuit carries its corrupted activation.

Per batch: a clean and a corrupted run (one batch; the corrupted rows record every source's output), and a
patched clean run per circuit (:class:`~circuitft.eap.patching.Patcher`); :func:`evaluate` is the case of
one circuit of :func:`evaluate_circuits`, the one evaluation loop. A node outside the circuit therefore acts
as fully corrupted; circuit edges carry the current run's activations. A full graph reproduces the clean
run and an empty one the corrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitft.data.pairs import PromptPairs
from circuitft.eap.forward import (
    analysis_mode,
    buffer_dtype,
    kept_logits,
    length_batches,
    model_device,
    repeated_index,
)
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.metrics import (
    AnswerIndex,
    answer_exact_match,
    kl_rows,
    metric_values,
    validate_pairs,
    wide,
)
from circuitft.eap.patching import Patcher, capture_sources, hooked
from circuitft.eap.progress import Counter, Progress
from circuitft.eap.settings import check_accuracy
from circuitft.eap.sites import check_graph, model_sites
from circuitft.errors import ConfigError


@dataclass
class EvalResult:
    """Per-example results of one circuit evaluation (all tensors [N], in row order)."""

    metric: str
    clean: torch.Tensor  # metric of the clean run (natural sign; 0 for kl)
    corrupted: torch.Tensor  # metric of the corrupted run
    circuit: torch.Tensor  # metric of the patched (circuit) run
    model_correct: torch.Tensor  # bool: greedy exact match of all answer tokens, clean run
    circuit_correct: torch.Tensor  # bool: same for the circuit run
    kl_corr_clean: torch.Tensor  # KL(P_corrupted || P_clean), mean over answer positions
    kl_corr_circ: torch.Tensor  # KL(P_corrupted || P_circuit)
    n_edges: int  # circuit edges used

    def __len__(self) -> int:
        return int(self.clean.shape[0])


def evaluate(
    model: torch.nn.Module,
    graph: Graph,
    pairs: PromptPairs,
    *,
    metric: str = "kl",
    batch_size: int = 8,
    progress: Progress = True,
    dtype: torch.dtype | str | None = None,
    accuracy: str = "exact_match",
) -> EvalResult:
    """Evaluate the circuit ``graph.in_graph`` on ``pairs`` (see module docstring); the graph is not modified.

    The one-circuit case of :func:`evaluate_circuits`. ``accuracy="first_token"`` scores model and circuit
    accuracy on the first answer token only.
    """
    return evaluate_circuits(
        model,
        graph.cfg,
        [graph.in_graph],
        pairs,
        metric=metric,
        batch_size=batch_size,
        dtype=dtype,
        accuracy=accuracy,
        progress=progress,
    )[0]


def evaluate_circuits(
    model: torch.nn.Module,
    cfg: GraphConfig,
    circuits: Sequence[torch.Tensor],
    pairs: PromptPairs,
    *,
    metric: str = "kl",
    batch_size: int = 8,
    dtype: torch.dtype | str | None = None,
    accuracy: str = "exact_match",
    progress: Progress = False,
    desc: str = "evaluate",
) -> list[EvalResult]:
    """One :class:`EvalResult` per edge mask in ``circuits`` (each [n_forward, n_backward] bool), in row order.

    Per batch (rows batched by length) the model runs corrupted and clean once, as one batch, recording the
    corrupted source outputs, then once patched per circuit (the recorded outputs are copied for each, since
    a patched run consumes them): k circuits cost 2 + k forward passes per batch, not 3k.
    ``accuracy="first_token"`` scores model and circuit accuracy on the first answer token only.
    ``progress``: a tqdm bar (True, labelled ``desc``), none (False) or a ``(done, total)`` hook called after
    each batch.
    """
    first = check_accuracy(accuracy)
    validate_pairs(pairs, metric)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    sites = model_sites(model)
    check_graph(sites, cfg)
    device = model_device(model)
    dtype = buffer_dtype(model, dtype)
    real = cfg.real_edge_mask
    notins = [(real & ~c.cpu()).to(device) for c in circuits]
    patchers = [Patcher(sites, cfg, n, dtype=dtype, device=device) for n in notins]  # plans built once
    common: dict[str, list[torch.Tensor]] = {k: [] for k in ("clean", "corr", "mc", "klc")}
    per: list[dict[str, list[torch.Tensor]]] = [{k: [] for k in ("circ", "cc", "klk")} for _ in circuits]
    order = []  # rows are batched by length; results go back to input order at the end
    bar = Counter(-(-len(pairs) // batch_size), progress, desc)
    with analysis_mode(model), torch.no_grad():
        for rows, batch in length_batches(pairs, batch_size):
            order.append(rows)
            batch = batch.to(device)
            index = AnswerIndex.from_batch(batch, metric)
            mask = batch.attention_mask
            b, t = batch.clean_ids.shape
            delta = torch.empty(cfg.n_forward, b, t, sites.d_model, dtype=dtype, device=device)
            resid: dict = {}
            # corrupted and clean rows in one run (one larger batch); the corrupted rows are recorded
            both = torch.cat([batch.corrupted_ids, batch.clean_ids])
            with hooked(capture_sources(sites, cfg, delta, "set", resid, rows=b)):
                logits = kept_logits(
                    model, repeated_index(index, 2), input_ids=both, attention_mask=mask.repeat(2, 1)
                )
            corr, clean = logits.chunk(2)
            lp_clean, lp_corr = torch.log_softmax(wide(clean), -1), torch.log_softmax(wide(corr), -1)
            common["clean"].append(metric_values(metric, clean, index, lp_clean))
            common["corr"].append(metric_values(metric, corr, index, lp_clean))
            common["mc"].append(answer_exact_match(clean, index.token, index.answer_len, first))
            common["klc"].append(index.per_example_mean(kl_rows(lp_corr, lp_clean)))
            for i, (patcher, out) in enumerate(zip(patchers, per, strict=True)):
                work = delta if i == len(patchers) - 1 else delta.clone()  # a patched run consumes it
                with hooked(patcher.bind(work, resid).hooks()):
                    circ = kept_logits(model, index, input_ids=batch.clean_ids, attention_mask=mask)
                lp_circ = torch.log_softmax(wide(circ), -1)
                out["circ"].append(metric_values(metric, circ, index, lp_clean))
                out["cc"].append(answer_exact_match(circ, index.token, index.answer_len, first))
                out["klk"].append(index.per_example_mean(kl_rows(lp_corr, lp_circ)))
                del work
            bar.update()
    bar.close()
    back = torch.argsort(torch.cat(order)) if order else torch.zeros(0, dtype=torch.long)
    cat = lambda xs: torch.cat(xs).cpu()[back] if xs else torch.zeros(0)  # noqa: E731
    shared = {k: cat(v) for k, v in common.items()}
    return [
        EvalResult(
            metric,
            shared["clean"],
            shared["corr"],
            cat(out["circ"]),
            shared["mc"].bool(),
            cat(out["cc"]).bool(),
            shared["klc"],
            cat(out["klk"]),
            int((c.cpu() & real).sum()),
        )
        for c, out in zip(circuits, per, strict=True)
    ]


def faithfulness(result: EvalResult) -> dict[str, float]:
    """Summary numbers of an evaluation.

    - ``faithfulness``: (mean circuit - mean corrupted) / (mean clean - mean corrupted) (NaN if the
      denominator is 0): 1 = full-model behaviour, 0 = corrupted behaviour;
    - ``kl_recovered_pct`` (only for the ``kl`` metric): 100 (1 - |B - C| / B), B = mean
      KL(P_corr || P_clean), C = mean KL(P_corr || P_circ) (the fine-tuning projects' "KL faithfulness
      percentage", called ``kl_faithfulness_pct`` before);
    - ``metric_gap``: |mean clean - mean corrupted|, the denominator of ``faithfulness`` (near 0, the
      clean and corrupted runs hardly differ and faithfulness is a ratio of small numbers);
    - ``faithfulness_se``: the standard error of ``faithfulness`` over the rows (delta method for a ratio of
      means: ``sd(d_i - F g_i) / (sqrt(n) |mean g|)``, d = circuit - corrupted, g = clean - corrupted; NaN
      under 2 rows): large when the gap is small against the row-to-row spread;
    - the means of each run's metric and the clean / circuit accuracies.
    """
    clean, corr, circ = (float(x.double().mean()) for x in (result.clean, result.corrupted, result.circuit))
    denom = clean - corr
    b = float(result.kl_corr_clean.double().mean())
    c = float(result.kl_corr_circ.double().mean())
    kl = {"kl_recovered_pct": 100.0 * (1.0 - abs(b - c) / b) if b != 0 else math.nan}
    faith = (circ - corr) / denom if denom != 0 else math.nan
    n = len(result)
    se = math.nan
    if n >= 2 and denom != 0:
        resid = (result.circuit - result.corrupted).double() - faith * (
            result.clean - result.corrupted
        ).double()
        se = float(resid.std()) / (math.sqrt(n) * abs(denom))
    return {
        "faithfulness": faith,
        "faithfulness_se": se,
        **(kl if result.metric == "kl" else {}),
        "clean_metric": clean,
        "corrupted_metric": corr,
        "circuit_metric": circ,
        "metric_gap": abs(denom),
        "model_accuracy": float(result.model_correct.float().mean()),
        "circuit_accuracy": float(result.circuit_correct.float().mean()),
    }
