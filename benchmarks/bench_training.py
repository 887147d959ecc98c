"""Lightning overhead: LoRAModule + TaskStreamDataModule under ``L.Trainer`` vs a plain PyTorch + peft loop.

Both train the same peft-wrapped model (same spec, LoRA settings, AdamW, learning rate) on the same batches
(the stream's own seeded batches) for the same number of steps; the Lightning side runs with the defaults of
``circuitft fit`` (TensorBoard logging every step, progress bar off, checkpointing off). Runs alternate
plain / Lightning ``--repeats`` times and the median seconds per step of each are compared (first
``--warmup`` steps excluded).

    python benchmarks/bench_training.py --model smollm2-135m --steps 12 --batch_size 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import lightning as L
import torch

from circuitft.data.stream import TaskStreamDataModule
from circuitft.eap.answers import answer_loss
from circuitft.training.module import LoRAModule


class StepTimer(L.Callback):
    """Wall time between consecutive batch starts: everything the loop does per step (data, hooks, logging)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: D102
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now


def _datamodule(args, module: LoRAModule) -> TaskStreamDataModule:
    task = {"task": "AddSub", "steps": args.steps, "n_train": 512, "n_val": 0, "params": {"lo": 0, "hi": 9}}
    if args.prefix is not None:
        task["params"]["prefix"] = args.prefix
    dm = TaskStreamDataModule(tasks=[task], batch_size=args.batch_size)
    dm.tokenizer = module.tokenizer
    return dm


def _module(args) -> LoRAModule:
    L.seed_everything(0, verbose=False)
    return LoRAModule(model=args.model, lora_r=args.lora_r, lr=args.lr)


def run_lightning(args) -> list[float]:
    """Seconds per step of ``Trainer.fit`` (loop overhead, logging and hooks included), per step."""
    module = _module(args)
    dm = _datamodule(args, module)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as root:
        from lightning.pytorch.loggers import TensorBoardLogger

        trainer = L.Trainer(
            default_root_dir=root,
            logger=TensorBoardLogger(root, name="", version=""),
            callbacks=[timer],
            accelerator="cpu" if args.cpu else "auto",
            devices=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            limit_val_batches=0,
        )
        t0 = time.perf_counter()
        trainer.fit(module, dm)
        total = time.perf_counter() - t0
    return timer.times, total


def run_plain(args) -> list[float]:
    """Seconds per step of a bare loop: forward, answer loss, backward, AdamW step, zero_grad."""
    module = _module(args)
    dm = _datamodule(args, module)
    dm.setup("fit")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    model = module.model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    loader = dm.train_dataloader()
    times: list[float] = []
    t0, last = time.perf_counter(), None
    for item in loader:
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
        b = item["batch"].to(device)
        logits = model(input_ids=b.clean_ids, attention_mask=b.attention_mask).logits
        loss = answer_loss(logits, b)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return times, time.perf_counter() - t0


def main() -> None:
    """Run the comparison and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lora_r", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--prefix", default="", help="task prompt prefix ('' = bare '7+5=' prompts)")
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    args = p.parse_args()
    plain, light, plain_total, light_total = [], [], [], []
    for _ in range(args.repeats):
        t, tot = run_plain(args)
        plain += t[args.warmup :]
        plain_total.append(tot)
        t, tot = run_lightning(args)
        light += t[args.warmup :]
        light_total.append(tot)
    mp, ml = statistics.median(plain), statistics.median(light)
    print(
        json.dumps(
            {
                "model": args.model,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "repeats": args.repeats,
                "device": "cuda" if torch.cuda.is_available() and not args.cpu else "cpu",
                "plain_s_per_step": round(mp, 4),
                "lightning_s_per_step": round(ml, 4),
                "overhead_step": round(ml / mp - 1, 4),
                "plain_fit_s": [round(x, 2) for x in plain_total],
                "lightning_fit_s": [round(x, 2) for x in light_total],
            }
        )
    )


if __name__ == "__main__":
    main()
