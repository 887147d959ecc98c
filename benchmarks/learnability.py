"""How fast a task is learned: held-out accuracy against training steps, for each task and training recipe.

Each (task, recipe) trains a fresh LoRA adapter on one task with ``LoRAModule`` and the task stream under
``L.Trainer`` (exactly what ``circuitft fit`` runs), and scores the model's exact-match accuracy on every
held-out row of the task (its val and test splits, never trained on) before training and every
``--eval_every`` steps, with the wall time spent training so far. A recipe is ``SCHEDULE:LR[:WARMUP]``
(``constant:2.5e-3``, ``cosine:1e-3:10``; schedules as ``model.lr_schedule``). The pair configs' learning
rate and schedule come from this table (docs/results/learnability.md).

    python benchmarks/learnability.py --model smollm2-135m --tasks Add Sub AddSub AddSubInv \\
        --recipes constant:2.5e-3 cosine:1e-3:10 cosine:2e-3:10 --steps 240 --eval_every 40 \\
        --out docs/results/learnability.json

Rows, seeds and batches are those of a pair-demo stage (operands ``--lo``..``--hi``, bare prompts); the
output JSON records the command, the date, the seed and every point, and the script prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from circuitft.data.stream import TaskStreamDataModule
from circuitft.data.tasks import split_limits
from circuitft.eap.accuracy import model_accuracy
from circuitft.files import atomic_write_text
from circuitft.quiet import quiet_framework
from circuitft.training.module import LoRAModule


@dataclass(frozen=True)
class Recipe:
    """A training recipe: learning-rate schedule inside the task, peak learning rate, warm-up steps."""

    schedule: str
    lr: float
    warmup: int = 0

    @classmethod
    def parse(cls, text: str) -> Recipe:
        """``SCHEDULE:LR[:WARMUP]`` -> Recipe (one-line ``ValueError`` naming the bad part)."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"recipe {text!r}: expected SCHEDULE:LR[:WARMUP], e.g. cosine:1e-3:10")
        try:
            return cls(parts[0], float(parts[1]), int(parts[2]) if len(parts) == 3 else 0)
        except ValueError:
            raise ValueError(f"recipe {text!r}: LR must be a number and WARMUP an integer") from None

    def __str__(self) -> str:
        return f"{self.schedule}:{self.lr:g}" + (f":{self.warmup}" if self.warmup else "")


class HeldOutAccuracy(L.Callback):
    """Scores the model on the task's held-out rows at step 0 and every ``every`` steps (and the last)."""

    def __init__(self, task: str, every: int, steps: int, batch_size: int) -> None:
        self.task, self.every, self.steps, self.batch_size = task, every, steps, batch_size
        self.points: list[dict[str, Any]] = []
        self._trained_s = 0.0
        self._t0: float | None = None

    def _score(self, trainer: L.Trainer, module: LoRAModule) -> None:
        dm = trainer.datamodule
        rows = [
            model_accuracy(module.model, dm.task_pairs(self.task, s), batch_size=self.batch_size)
            for s in ("val", "test")
        ]
        n = sum(len(r.correct) for r in rows)
        hits = sum(int(r.correct.sum()) for r in rows)
        self.points.append(
            {
                "step": trainer.global_step,
                "accuracy": hits / n if n else None,
                "n": n,
                "train_s": round(self._trained_s, 2),
            }
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._score(trainer, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:  # noqa: D102
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:  # noqa: D102
        if self._t0 is not None:
            self._trained_s += time.perf_counter() - self._t0
        step = trainer.global_step
        if step % self.every == 0 or step == self.steps:
            self._score(trainer, pl_module)


def run_one(args: argparse.Namespace, task: str, recipe: Recipe) -> list[dict[str, Any]]:
    """Train ``task`` with ``recipe`` for ``args.steps`` steps; the held-out accuracy points."""
    L.seed_everything(args.seed, verbose=False)
    module = LoRAModule(
        model=args.model,
        lora_r=args.lora_r,
        lr=recipe.lr,
        lr_schedule=recipe.schedule,
        warmup_steps=recipe.warmup,
    )
    params = {"lo": args.lo, "hi": args.hi, "prefix": ""}
    stage = {"task": task, "steps": args.steps, "n_train": args.steps * args.batch_size, "params": params}
    limits = split_limits(task, **params) or {}
    stage.update(
        n_val=args.n_heldout or limits.get("val", 200), n_test=args.n_heldout or limits.get("test", 200)
    )
    dm = TaskStreamDataModule(tasks=[stage], batch_size=args.batch_size, seed=args.seed)
    probe = HeldOutAccuracy(task, args.eval_every, args.steps, args.batch_size)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            default_root_dir=root,
            max_steps=args.steps,
            accelerator="auto",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[probe],
        )
        trainer.fit(module, datamodule=dm)
    return probe.points


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per (task, recipe), one column per evaluated step, the training time at the end."""
    steps = sorted({p["step"] for r in results for p in r["points"]})
    head = "| task | recipe | n | " + " | ".join(f"step {s}" for s in steps) + " | train time |"
    lines = [head, "|" + "---|" * (len(steps) + 4)]
    for r in results:
        acc = {p["step"]: p["accuracy"] for p in r["points"]}
        cells = [f"{acc[s]:.2f}" if acc.get(s) is not None else "" for s in steps]
        last = r["points"][-1]
        lines.append(
            f"| {r['task']} | {r['recipe']} | {last['n']} | "
            + " | ".join(cells)
            + f" | {last['train_s']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", nargs="+", default=["Add", "Sub", "AddSub", "AddSubInv"])
    p.add_argument("--recipes", nargs="+", default=["constant:2.5e-3", "cosine:1e-3:10", "cosine:2e-3:10"])
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--eval_every", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lora_r", type=int, default=16)
    p.add_argument("--lo", type=int, default=0)
    p.add_argument("--hi", type=int, default=29)
    p.add_argument(
        "--n_heldout",
        type=int,
        default=0,
        help="rows of each held-out split (val, test); 0: every row it holds",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results (written atomically)")
    args = p.parse_args(argv)
    try:
        recipes = [Recipe.parse(r) for r in args.recipes]
    except ValueError as err:
        p.error(str(err))
    if args.steps < 1 or args.eval_every < 1:
        p.error("--steps and --eval_every must be >= 1")
    quiet_framework()
    results = []
    for task in args.tasks:
        for recipe in recipes:
            points = run_one(args, task, recipe)
            results.append({"task": task, "recipe": str(recipe), "points": points})
            print(
                f"{task:10s} {recipe!s:16s} " + "  ".join(f"{q['step']}:{q['accuracy']:.2f}" for q in points),
                flush=True,
            )
    print()
    print(table(results))
    if args.out is not None:
        record = {
            "command": "python benchmarks/learnability.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": dt.date.today().isoformat(),
            "seed": args.seed,
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "results": results,
        }
        atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
