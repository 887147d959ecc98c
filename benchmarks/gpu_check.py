"""Speed figures for ``benchmarks/gpu_check.sh``: one JSON line per figure, printed and written to ``--out``.

Figures (``--smoke``: the same on CPU with a tiny shape and few batches):

- ``eap_<dtype>``: EAP-IG-inputs (KL, ig_steps 5) on a Pythia-1.4B-shaped random model, seconds per 100
  batches of 6 x 25 tokens, ratio to the plain-transformers floor, peak GPU memory; float32 and bfloat16;
- ``eval_<dtype>``: evaluation of the top 5% circuit on the same shape and its ratio to the eval floor;
- ``train``: LoRA steps per second (r 32, batch 40, bf16-mixed);
- ``projection``: experiment 2 of the prior work (56 ordered pairs x 540 steps, circuits of both tasks at
  7 checkpoint steps on 400 validation pairs, validation every 90 steps) in hours, from the parts above.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from circuitft.timing import run_eap_bench, run_train_bench, shaped_model

# experiment 2 (configs/experiments/pair_base.yaml, pairs.yaml)
PAIRS, STEPS, EVERY, N_VAL, VAL_BATCH, TASKS_PER_RUN = 56, 540, 90, 400, 40, 2
# the fields of run_eap_bench's record written to the eap_<dtype> and eval_<dtype> figures
EAP_FIELDS = (
    "dtype n_edges batches eap_seconds_per_100_batches eap_ratio eap_peak_gib floor_peak_gib eap_seconds "
    "floor_seconds"
).split()
EVAL_FIELDS = (
    "dtype eval_circuit_edges batches eval_seconds_per_100_batches eval_ratio eval_seconds eval_floor_seconds"
).split()


def projection(eap: dict, train: dict) -> dict:
    """Hours for experiment 2 from measured parts: training steps, circuits (attribution + evaluation per
    example, measured at batch 6), validation forwards (batch 40)."""
    analysed_steps = STEPS // EVERY + 1  # step 0 and every checkpoint
    # tasks analysed ("all": both tasks of the pair at every analysed step)
    analyses = analysed_steps * TASKS_PER_RUN
    per_example = (eap["eap_seconds"] + eap["eval_seconds"]) / (eap["batches"] * eap["batch_size"])
    circuits_s = analyses * N_VAL * per_example
    # validate_on: seen -> 1 task during A, 2 during B, every 90 steps
    val_batches = sum((1 if s <= STEPS // 2 else 2) for s in range(EVERY, STEPS + 1, EVERY)) * (
        N_VAL // VAL_BATCH
    )
    val_s = val_batches * train["forward_seconds_per_batch"]
    train_s = STEPS * train["train_seconds_per_step"]
    run_s = train_s + circuits_s + val_s
    return {
        "pairs": PAIRS,
        "steps_per_pair": STEPS,
        "circuit_analyses_per_pair": analyses,
        "hours_training": round(PAIRS * train_s / 3600, 3),
        "hours_circuits": round(PAIRS * circuits_s / 3600, 3),
        "hours_validation": round(PAIRS * val_s / 3600, 3),
        "hours_total": round(PAIRS * run_s / 3600, 3),
        "circuits_from": f"eap_{eap['dtype']}",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shape, few batches")
    p.add_argument("--out", default=os.environ.get("OUT_DIR", "benchmarks/out"))
    p.add_argument("--batches", type=int, default=None, help="timed batches (default 10; smoke 2)")
    args = p.parse_args()
    smoke = args.smoke
    device = "cpu" if smoke else "cuda"
    if not smoke and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible to PyTorch (use --smoke on a machine without one)",
            file=sys.stderr,
        )
        return 2
    shape = "tiny" if smoke else "pythia-1.4b"
    batches = args.batches or (2 if smoke else 10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    tests = out / "cuda_tests.json"  # written by gpu_check.sh just before
    if tests.is_file():
        records.append(json.loads(tests.read_text()))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"

    def emit(figure: str, record: dict) -> None:
        line = {
            "figure": figure,
            "shape": shape,
            "device": gpu,
            "date": stamp,
            "torch": torch.__version__,
            **record,
        }
        records.append(line)
        print(json.dumps(line), flush=True)

    eap_by_dtype: dict[str, dict] = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = shaped_model(shape, device, dtype)
        rec = run_eap_bench(
            f"{shape}-shape",
            batch_size=6,
            seq_len=25,
            batches=batches,
            ig_steps=5,
            repeats=1 if smoke else 2,
            device=device,
            model=model,
        )
        name = str(dtype).removeprefix("torch.")
        eap_by_dtype[name] = rec
        emit(f"eap_{name}", {k: rec[k] for k in EAP_FIELDS})
        emit(f"eval_{name}", {k: rec[k] for k in EVAL_FIELDS})
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    model = shaped_model(shape, device, torch.float32)
    train = run_train_bench(
        model, batch_size=40, seq_len=25, steps=2 if smoke else 10, warmup=1 if smoke else 3
    )
    emit("train", train)
    emit("projection", projection(eap_by_dtype["bfloat16"], train))
    path = out / "gpu_check.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)
    print(f"gpu_check: {len(records)} figures written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
