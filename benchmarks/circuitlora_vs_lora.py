"""CircuitLoRA vs uniform LoRA at an equal parameter count and an equal number of optimizer steps.

For each seed: a CircuitLoRA run (``model.lora_plan: circuit``; it trains ``steps`` steps after a probe of
``probe_steps`` steps) and a uniform LoRA run of rank ``uniform_rank_equal_budget`` (the rank whose
parameter count is closest to the plan's) that trains ``steps + probe_steps`` steps; both from the same
config with ``seed_everything`` and ``data.seed`` set to the seed. Each final adapter is scored on held-out
rows: ``--n_test`` rows of every task drawn with ``--test_seed`` (disjoint from the data seeds), without
duplicates and without any row whose clean prompt appears in the training or validation rows of that seed
(both methods of a seed share their data, so each seed compares the two on the same rows). Score:
teacher-forced exact match of every answer token (as ``val/acc``). Writes ``results.jsonl`` (one line per
run) and ``summary.md``.

    nice python benchmarks/circuitlora_vs_lora.py --config configs/experiments/circuitlora_smollm2.yaml \\
        --seeds 0 1 2 --out runs/circuitlora_bench --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_config(base: dict, seed: int, method: str, rank: int | None, root: Path) -> dict:
    """The config of one run (a deep copy of ``base`` with the seed, the plan and the steps set)."""
    cfg = json.loads(json.dumps(base))
    cfg["seed_everything"] = seed
    cfg.setdefault("data", {})["seed"] = seed
    cfg.setdefault("trainer", {})["default_root_dir"] = str(root / f"{method}_s{seed}")
    model = cfg.setdefault("model", {})
    model.setdefault("circuit_lora", {})["seed"] = seed
    probe = int(model["circuit_lora"].get("probe_steps", 20))
    if method in ("uniform", "uniform_short"):
        model["lora_plan"] = "uniform"
        model["lora_r"] = rank
        model["lora_alpha"] = 2 * rank
        for task in cfg["data"]["tasks"]:  # uniform: the probe's steps go to the uniform run
            extra = probe if method == "uniform" and task is cfg["data"]["tasks"][0] else 0
            task["steps"] = int(task["steps"]) + extra
    else:
        model["lora_plan"] = "circuit"
    return cfg


def equal_budget_rank(base: dict) -> int:
    """Uniform rank with the plan's parameter count (top-k rule: any k layers, all layers alike)."""
    sys.path.insert(0, str(REPO / "src"))
    from circuitft.circuitlora import plan as P
    from circuitft.circuitlora.options import as_options
    from circuitft.circuitlora.probe import lora_shapes
    from circuitft.models.loading import load_model
    from circuitft.models.lora import wrap_lora

    model = base["model"]
    opts = as_options(model.get("circuit_lora"))
    if opts.rule != "top_k":
        raise SystemExit("this benchmark fixes the budget up front: use rule top_k")
    peft = wrap_lora(load_model(model["model"]).model, 1, 2.0, 0.0, model.get("target_modules", "auto"))
    shapes = lora_shapes(peft)
    per_layer: dict[int, int] = {}
    for name, (i, o) in shapes.items():
        per_layer[P.module_layer(name)] = per_layer.get(P.module_layer(name), 0) + i + o
    if len(set(per_layer.values())) != 1:
        raise SystemExit("layers differ in LoRA size: the equal budget depends on the plan; compare per plan")
    critical = list(range(opts.k))
    pattern, _ = P.rank_patterns(list(shapes), critical, opts.r_critical, opts.alpha_critical)
    budget = P.lora_parameters(shapes, P.module_ranks(list(shapes), opts.r_other, pattern))
    return P.equal_budget_rank(shapes, budget)


def fit(cfg: dict, root: Path, threads: int) -> float:
    """Run ``circuitft fit`` on ``cfg`` (resuming a run that has checkpoints); returns wall seconds."""
    run_dir = Path(cfg["trainer"]["default_root_dir"])
    if (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "done").is_file():
        return float((run_dir / "done").read_text())
    path = root / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "circuitft", "fit", "--config", str(path)]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        cmd += ["--ckpt_path", "last"]
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
    }
    t0 = time.time()
    with open(root / f"{run_dir.name}.log", "w") as log:
        r = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"{run_dir.name} failed (exit {r.returncode}); see {root / run_dir.name}.log")
    seconds = time.time() - t0
    (run_dir / "done").write_text(f"{seconds:.1f}")
    return seconds


def held_out(base: dict, seed: int, n_test: int, test_seed: int, tokenizer) -> dict:
    """Per task: held-out PromptPairs (``test_seed``), without the prompts of seed ``seed``'s train/val rows."""
    from circuitft.data.tasks import make_pairs

    out = {}
    data = base["data"]
    for i, t in enumerate(data["tasks"]):
        name = t.get("name") or t["task"]
        task_seed = t.get("seed") if t.get("seed") is not None else seed + i
        n_rows = int(t["n_train"]) + int(t.get("n_val", 200))
        rows = make_pairs(t["task"], tokenizer, n_rows, task_seed, **t.get("params", {})).rows
        seen = {r.clean for r in rows}
        pairs = make_pairs(t["task"], tokenizer, n_test, test_seed, **t.get("params", {}))
        keep, prompts = [], set()
        for j, r in enumerate(pairs.rows):
            if r.clean not in seen and r.clean not in prompts:
                keep.append(j)
                prompts.add(r.clean)
        out[name] = pairs.subset(keep)
    return out


def score(ckpt: Path, tests: dict) -> dict[str, float]:
    """Teacher-forced exact match of every answer token on each task's held-out rows."""
    import torch

    from circuitft.eap.answers import exact_match
    from circuitft.models.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(ckpt).model
    acc = {}
    with torch.no_grad():
        for name, pairs in tests.items():
            hits = []
            for b in pairs.batches(32):
                logits = model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits
                hits.append(exact_match(logits, b))
            acc[name] = float(torch.cat(hits).mean())
    return acc


def main() -> None:
    """Run both methods for every seed, score them, write results.jsonl and summary.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs/experiments/circuitlora_smollm2.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/circuitlora_bench")
    ap.add_argument("--n_test", type=int, default=2000, help="rows drawn before removing seen ones")
    ap.add_argument("--test_seed", type=int, default=99_991)
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["circuit", "uniform"],
        choices=["circuit", "uniform", "uniform_short"],
        help="uniform_short: the uniform rank trained only the planned run's steps (a control)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = ap.parse_args()
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.config).read_text())
    rank = equal_budget_rank(base)
    runs = [(s, m) for s in args.seeds for m in args.methods]
    cfgs = {(s, m): run_config(base, s, m, rank, root) for s, m in runs}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        seconds = dict(zip(runs, pool.map(lambda k: fit(cfgs[k], root, args.threads), runs), strict=True))
    from circuitft.models.loading import load_model

    tokenizer = load_model(base["model"]["model"]).tokenizer
    tests = {s: held_out(base, s, args.n_test, args.test_seed, tokenizer) for s in args.seeds}
    lines, rows = [], []
    for s, m in runs:
        run_dir = Path(cfgs[(s, m)]["trainer"]["default_root_dir"])
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        import torch

        params = sum(t.numel() for t in torch.load(ckpt, weights_only=True)["state_dict"].values())
        plan = json.loads((run_dir / "circuit_lora.json").read_text()) if m == "circuit" else None
        row = {
            "seed": s,
            "method": m,
            "rank": "plan" if m == "circuit" else rank,
            "trainable_parameters": params,
            "steps": sum(int(t["steps"]) for t in cfgs[(s, m)]["data"]["tasks"]),
            "probe_steps": plan["probe"]["steps"] if plan else 0,
            "critical_layers": plan["critical_layers"] if plan else None,
            "test_rows": {k: len(v) for k, v in tests[s].items()},
            "test_acc": score(ckpt, tests[s]),
            "seconds": seconds[(s, m)],
        }
        rows.append(row)
        lines.append(json.dumps(row))
    (root / "results.jsonl").write_text("\n".join(lines) + "\n")
    summary = [
        "| method | trainable parameters | steps (probe) | seeds | held-out acc mean | std | per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in args.methods:
        mine = [r for r in rows if r["method"] == m]
        accs = [statistics.mean(r["test_acc"].values()) for r in mine]
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        label = {"circuit": "CircuitLoRA", "uniform": f"LoRA r{rank}"}.get(
            m, f"LoRA r{rank}, no probe budget"
        )
        summary.append(
            f"| {label} | {mine[0]['trainable_parameters']:,} | {mine[0]['steps'] + mine[0]['probe_steps']} "
            f"({mine[0]['probe_steps']}) | {len(mine)} | {statistics.mean(accs):.3f} | {std:.3f} | "
            + ", ".join(f"{a:.3f}" for a in accs)
            + " |"
        )
    crit = [r["critical_layers"] for r in rows if r["method"] == "circuit"]
    summary += [
        "",
        f"critical layers per seed: {crit}",
        f"held-out rows per seed: {[r['test_rows'] for r in rows if r['method'] == args.methods[0]]}",
    ]
    (root / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
