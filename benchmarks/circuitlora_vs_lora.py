"""CircuitLoRA vs uniform LoRA at an equal parameter count and an equal number of optimizer steps.

For each seed: a CircuitLoRA run (``model.lora_plan: circuit``; it trains ``steps`` steps after a probe of
``probe_steps`` steps) and a uniform LoRA run of rank ``uniform_rank_equal_budget`` (the rank whose
parameter count is closest to the plan's) that trains ``steps + probe_steps`` steps; both from the same
config with ``seed_everything`` and ``data.seed`` set to the seed. Each final adapter is scored on the
``test`` split: ``--n_test`` rows of every task drawn with ``--test_seed``, the same rows for every run, never
a training or validation problem (the hash split). Score: teacher-forced exact match of every answer token
(as ``val/acc``), kept per row. The two methods are compared paired (same rows, same seed): McNemar's exact
test on the per-row outcomes, the gain's 95% interval, a t interval over the seeds' gains, and the smallest
gain each can detect at 80% power (:mod:`circuitft.analysis.paired`); the verdict is "inconclusive" when an
interval holds 0. Writes ``results.jsonl`` (one line per run, with the per-row outcomes) and ``summary.md``.

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


def held_out(base: dict, n_test: int, test_seed: int, tokenizer) -> dict:
    """Per task: up to ``n_test`` rows of its ``test`` split, drawn with ``test_seed``: the same rows for every
    seed and method (so every comparison is paired), never a training or validation problem (the hash split
    puts no clean prompt in two splits)."""
    from circuitft.data.tasks import make_pairs, split_limits

    out = {}
    for t in base["data"]["tasks"]:
        name = t.get("name") or t["task"]
        params = t.get("params", {})
        limit = (split_limits(t["task"], **params) or {}).get("test", n_test)
        out[name] = make_pairs(t["task"], tokenizer, min(n_test, limit), test_seed, None, "test", **params)
    return out


def score_model(model, tests: dict) -> dict[str, list[bool]]:
    """Per task: each held-out row answered correctly (teacher-forced exact match of every answer token)."""
    import torch

    from circuitft.eap.answers import exact_match

    out = {}
    with torch.no_grad():
        for name, pairs in tests.items():
            hits = []
            for b in pairs.batches(32):
                logits = model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits
                hits.append(exact_match(logits, b))
            out[name] = [bool(x) for x in torch.cat(hits).tolist()]
    return out


def score(ckpt: Path, tests: dict) -> dict[str, list[bool]]:
    """:func:`score_model` of a circuitft checkpoint's model."""
    from circuitft.models.checkpoint import model_from_checkpoint

    return score_model(model_from_checkpoint(ckpt).model, tests)


def paired_lines(rows: list[dict], a: str, b: str, label_a: str, label_b: str) -> list[str]:
    """The paired comparison of methods ``a`` and ``b``: McNemar on every (seed, row), the per-seed gains'
    t interval, the smallest gain each can detect at 80% power and the verdict (inconclusive when an
    interval holds 0)."""
    from circuitft.analysis.paired import across_seeds, mcnemar

    by = {(r["seed"], r["method"]): r for r in rows}
    seeds = sorted({s for s, m in by if m == a and (s, b) in by})
    if not seeds:
        return []
    flat = lambda r: [x for task in sorted(r["outcomes"]) for x in r["outcomes"][task]]  # noqa: E731
    xs = [x for s in seeds for x in flat(by[(s, a)])]
    ys = [y for s in seeds for y in flat(by[(s, b)])]
    pooled = mcnemar(xs, ys, (label_a, label_b))
    gains = [mcnemar(flat(by[(s, a)]), flat(by[(s, b)]))["gain"] for s in seeds]
    seed = across_seeds(gains, (label_a, label_b))
    pts = lambda v: f"{100 * v:+.1f}"  # noqa: E731
    inconclusive = "inconclusive" in pooled["verdict"] or "inconclusive" in seed["verdict"]
    return [
        f"paired on the same {pooled['n'] // len(seeds)} test rows x {len(seeds)} seed(s): gain of {label_a} over "
        f"{label_b} {pts(pooled['gain'])} points (95% CI {pts(pooled['ci_low'])} to {pts(pooled['ci_high'])}); "
        f"McNemar exact p = {pooled['p_value']:.3g} ({pooled['only_' + label_a]} rows only {label_a} answers, "
        f"{pooled['only_' + label_b]} only {label_b}); smallest gain detectable at 80% power: "
        f"{100 * pooled['detectable_gain']:.1f} points",
        f"across seeds: mean gain {pts(seed['gain'])} points (95% t interval {pts(seed['ci_low'])} to "
        f"{pts(seed['ci_high'])}); smallest gain detectable at 80% power with {len(seeds)} seeds: "
        f"{100 * seed['detectable_gain']:.1f} points",
        "verdict: " + ("inconclusive (a 95% interval holds 0)" if inconclusive else pooled["verdict"]),
    ]


def main() -> None:
    """Run both methods for every seed, score them, write results.jsonl and summary.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs/experiments/circuitlora_smollm2.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/circuitlora_bench")
    ap.add_argument("--n_test", type=int, default=2000, help="test-split rows per task (at most the split's)")
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
    tests = held_out(base, args.n_test, args.test_seed, tokenizer)  # the same rows for every run
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
            "test_rows": {k: len(v) for k, v in tests.items()},
            "outcomes": score(ckpt, tests),
            "seconds": seconds[(s, m)],
        }
        row["test_acc"] = {k: sum(v) / len(v) if v else float("nan") for k, v in row["outcomes"].items()}
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
        f"test-split rows (the same for every run): {rows[0]['test_rows']}",
        "",
    ]
    if "circuit" in args.methods and "uniform" in args.methods:
        summary += paired_lines(rows, "circuit", "uniform", "CircuitLoRA", f"LoRA r{rank}")
    (root / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
