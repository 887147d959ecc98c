#!/usr/bin/env bash
# EAP-IG speed against the plain-transformers floor (see benchmarks/RESULTS.md). Run from the repository root.
# Uses the default cache (~/.cache/circuitft), where smollm2-135m is converted once (about 25 s).
set -euo pipefail
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BIN=${BIN:-.venv/bin}
for threads in 1 2; do
  "$BIN/circuitft" bench eap --model smollm2-135m --batch_size 6 --seq_len 25 --batches 2 --ig_steps 5 \
    --repeats "${REPEATS:-3}" --threads "$threads"
done
