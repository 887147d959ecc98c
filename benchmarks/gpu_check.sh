#!/usr/bin/env bash
# circuitft on one NVIDIA GPU with no network: CUDA tests, then speed figures (one JSON line each).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root (under 8 min on an H100/H200)
#   bash benchmarks/gpu_check.sh --smoke    # the same on CPU with tiny shapes (< 3 min), anywhere
#
# Uses the python3 it finds (PYTHON=... to choose) with its own torch, transformers and lightning, and src/
# through PYTHONPATH (nothing is installed into that Python). Packages it lacks come as wheels in .whl/
# (git-ignored), installed with `pip install --no-index --no-deps --target` into $WHEEL_SITE. Fill .whl/ on a
# machine with network, e.g. for Python 3.12 (one line names any package still missing):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl peft==0.18.0
# Figures are written to $OUT_DIR (default benchmarks/out/): gpu_check.jsonl and pytest_gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $arg (valid: --smoke)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-benchmarks/out}
WHEEL_SITE=${WHEEL_SITE:-/tmp/circuitft-wheels}
export OUT_DIR HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
command -v "$PY" >/dev/null || { echo "gpu_check: no $PY on PATH (set PYTHON=/path/to/python3)" >&2; exit 2; }
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() or $SMOKE else 4)" 2>/dev/null
case $? in
  0) ;;
  4) echo "gpu_check: no CUDA GPU visible to PyTorch on this machine (run with --smoke to check the script on CPU)" >&2
     exit 2 ;;
  *) echo "gpu_check: $PY cannot import torch; a recent PyTorch (>= 2.4) must be installed" >&2; exit 2 ;;
esac
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WHEEL_SITE" .whl/*.whl \
    || { echo "gpu_check: installing the wheels in .whl/ failed (see pip's message above)" >&2; exit 3; }
  export PYTHONPATH="$PWD/src:$WHEEL_SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
# every package circuitft imports on this path, with the oldest version known to work
"$PY" - <<'PYEOF' || exit 3
import importlib, sys
# (jsonargparse, gguf and datasets are not needed here: the checks use no CLI, embedded model or hub data)
need = {"yaml": None, "safetensors": None, "tokenizers": None, "tqdm": None, "pytest": None,
        "tensorboard": None, "torch": "2.4", "transformers": "5.0", "lightning": "2.4", "torchmetrics": None,
        "peft": "0.13"}  # light ones first
wheel = {"yaml": "pyyaml"}
def version(text):
    return tuple(int(p) for p in text.split("+")[0].split(".")[:2] if p.isdigit())
for name, oldest in need.items():
    try:
        mod = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001
        print(f"gpu_check: missing Python package {wheel.get(name, name)} ({type(err).__name__}: {err}); "
              f"put its wheel in .whl/ (see the top of benchmarks/gpu_check.sh)", file=sys.stderr)
        sys.exit(3)
    have = getattr(mod, "__version__", "")
    if oldest and have and version(have) < version(oldest):
        print(f"gpu_check: {name} {have} is too old; circuitft needs {name} >= {oldest} "
              f"(put a newer wheel in .whl/)", file=sys.stderr)
        sys.exit(3)
PYEOF
mkdir -p "$OUT_DIR"
start=$(date +%s)
# 1. CUDA tests (skipped, and counted as such, without a GPU)
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs >"$OUT_DIR/pytest_gpu.log" 2>&1
rc=$?
summary=$(tail -n 1 "$OUT_DIR/pytest_gpu.log")
"$PY" - "$rc" "$summary" "$OUT_DIR" <<'PYEOF'
import json, re, sys, pathlib
rc, summary, out = int(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
count = lambda word: int(m.group(1)) if (m := re.search(rf"(\d+) {word}", summary)) else 0
line = {"figure": "cuda_tests", "exit_code": rc, "passed": count("passed"), "failed": count("failed"),
        "skipped": count("skipped"), "errors": count("error"), "summary": summary.strip("= ")}
print(json.dumps(line))
(out / "cuda_tests.json").write_text(json.dumps(line) + "\n")
PYEOF
# 2-4. speed figures
if [ "$SMOKE" = 1 ]; then
  "$PY" benchmarks/gpu_check.py --smoke --out "$OUT_DIR" || exit 1
else
  "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" || exit 1
fi
echo "gpu_check: done in $(( $(date +%s) - start )) s; figures in $OUT_DIR (tests: $summary)" >&2
[ "$rc" = 0 ] || [ "$rc" = 5 ] || exit 1
