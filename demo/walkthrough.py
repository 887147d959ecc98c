# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # circuitft walkthrough: a task's circuit before and after LoRA fine-tuning
#
# This notebook (and the identical script `demo/walkthrough.py`) goes from task data to a circuit, trains a
# LoRA adapter, and shows how the circuit changed:
#
# 1. load held-out task data (`demo/data/`, made by `circuitft tasks make`);
# 2. find and evaluate the task's circuit on the untuned model, and draw it;
# 3. fine-tune a LoRA adapter for 60 steps (about a minute on CPU) with `circuitft fit`;
# 4. load the checkpoint and find the circuit again;
# 5. compare: accuracy, faithfulness, edge and node Jaccard, a diff diagram;
# 6. evaluate the task's circuit on another task's data.
#
# Run it as a script: `python demo/walkthrough.py` (the embedded SmolLM2-135M; the committed outputs took
# 90 s in all on 2 idle CPU cores, training included) or `python demo/walkthrough.py --model tiny-gpt2`
# (random weights, seconds).

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import circuitft as cf
from circuitft.cli import main as circuitft_cli
from circuitft.errors import CircuitftError
from circuitft.plots import circuit_diff_diagram, save_figure

if "__file__" in globals():  # run as a script
    HERE = Path(__file__).resolve().parent
else:  # a notebook kernel runs in demo/ (or in the repository root)
    HERE = Path.cwd() if (Path.cwd() / "data" / "addsub_val.csv").is_file() else Path("demo").resolve()
parser = argparse.ArgumentParser(description="circuitft walkthrough")
parser.add_argument("--model", default="smollm2-135m", help="model spec (default: the embedded SmolLM2)")
parser.add_argument("--out", default="runs/walkthrough", help="output folder")
parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default 60; 4 on tiny-*)")
parser.add_argument("--results", default=None, help="also write the printed numbers to this JSON file")
args, _ = parser.parse_known_args()  # a notebook kernel passes its own arguments
tiny = args.model.startswith("tiny-")
steps = args.steps or (4 if tiny else 60)
out = Path(args.out)


def fail(err: Exception) -> None:
    """One line on stderr and exit 2: what a user gets for a model it cannot load or a folder it cannot write."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)


try:
    out.mkdir(parents=True, exist_ok=True)
    (out / ".write-test").write_text("")
    (out / ".write-test").unlink()
except OSError as err:
    fail(OSError(f"cannot write to {out}: {err.strerror or err}"))

# %% [markdown]
# ## 1. Task data with a held-out split
#
# `demo/data/addsub_val.csv` holds validation rows of the built-in AddSub task on operands 0..19 (`12+9=` ->
# `21`; the corrupted prompt changes the second operand). Built-in tasks split their problem space into
# train/val/test by a hash of the problem, so these prompts never appear in training.

# %%
try:
    model = cf.load(args.model, progress=False)
    pairs = cf.load_pairs(HERE / "data" / "addsub_val.csv", model, task="AddSub")
    other = cf.load_pairs(HERE / "data" / "addsubinv_val.csv", model, task="AddSubInv")
except CircuitftError as err:
    fail(err)
print(f"{len(pairs)} AddSub pairs, e.g. {pairs.rows[0].clean!r} -> {pairs.rows[0].answer!r}")

# %% [markdown]
# ## 2. The circuit of the untuned model
#
# EAP-IG (integrated gradients on the input embeddings, 5 steps) scores every edge by how much patching it
# with its corrupted value would change the KL divergence from the clean output. The circuit is the top 5% of
# edges by |score|, pruned to edges on an input -> logits path. Faithfulness 1 means the circuit alone
# (everything else patched to its corrupted value) behaves like the full model; 0 means like the corrupted run.

# %%
before = cf.find_circuit(model, pairs, progress=False)
before_eval = cf.evaluate_circuit(model, before, pairs, progress=False)
print(
    f"untuned: {int(before_eval['n_edges'])} of {before.n_edges} edges, "
    f"faithfulness {before_eval['faithfulness']:.2f}, model accuracy {before_eval['model_accuracy']:.2f}, "
    f"circuit accuracy {before_eval['circuit_accuracy']:.2f}"
)
print(before.top_edges(8).to_string(index=False))
save_figure(cf.draw(before, title="AddSub circuit, untuned"), out / "circuit_untuned")

# %% [markdown]
# ## 3. Fine-tune a LoRA adapter
#
# `circuitft fit` with a small config: AddSub's training split, LoRA rank 16, one checkpoint at the end. The
# same command drives long runs, several tasks, resume and TensorBoard (see the README).

# %%
config = out / "fit.yaml"
config.write_text(
    f"""seed_everything: 0
trainer:
  default_root_dir: {out / "run"}
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
  val_check_interval: {steps}
checkpoint:
  every_n_train_steps: {steps}
model:
  model: {args.model}
  lora_r: 16
  lr: 2.0e-3
data:
  batch_size: 16
  tasks:
    - task: AddSub
      steps: {steps}
      n_train: 2000
      n_val: 16
      params: {{lo: 0, hi: 19, prefix: ""}}
"""
)
run = out / "run"
ckpt = run / "checkpoints" / "last.ckpt"
if not ckpt.is_file():
    status = circuitft_cli(["fit", "--config", str(config)])
    if status != 0:
        raise SystemExit(status)

# %% [markdown]
# ## 4. The circuit after fine-tuning
#
# `cf.load(checkpoint=...)` rebuilds the base model, merges the checkpoint's adapter into a frozen copy and
# returns it ready for analysis (`circuitft export CKPT --out DIR` writes the adapter as a peft folder).

# %%
tuned = cf.load(checkpoint=ckpt, progress=False)
after = cf.find_circuit(tuned, pairs, progress=False)
after_eval = cf.evaluate_circuit(tuned, after, pairs, progress=False)
print(
    f"tuned:   {int(after_eval['n_edges'])} edges, faithfulness {after_eval['faithfulness']:.2f}, "
    f"model accuracy {after_eval['model_accuracy']:.2f}, circuit accuracy {after_eval['circuit_accuracy']:.2f}"
)

# %% [markdown]
# ## 5. What changed
#
# Edge Jaccard compares the circuits' edge sets (after pruning), node Jaccard their node sets; edge change is
# measured on the top 5% of edges by |score| before pruning, as the prior work defined it (1 minus the share
# of those k edges both keep). Each line names its set, so the numbers follow from the counts. The prior work
# found that fine-tuning rewires edges far more than it changes which nodes take part.

# %%
change = cf.compare(before, after)
print(
    f"circuit edges: {change['edges_a']} untuned, {change['edges_b']} tuned, {change['edges_shared']} shared "
    f"(edge Jaccard {change['edge_jaccard']:.2f}); nodes: {change['nodes_shared']} shared "
    f"(node Jaccard {change['node_jaccard']:.2f})"
)
print(
    f"top 5% of edges by |score| before pruning (k = {change['top_k']}): edge change {change['edge_change']:.2f}, "
    f"Jaccard {change['top_k_jaccard']:.2f}"
)
print(
    f"accuracy {before_eval['model_accuracy']:.2f} -> {after_eval['model_accuracy']:.2f}, "
    f"faithfulness {before_eval['faithfulness']:.2f} -> {after_eval['faithfulness']:.2f}"
)
save_figure(
    circuit_diff_diagram(before, after, title="AddSub circuit", labels=("untuned", "tuned")),
    out / "circuit_diff",
)
print(f"figures: {out / 'circuit_untuned.png'}, {out / 'circuit_diff.png'}")

# %% [markdown]
# ## 6. One task's circuit on another task's data
#
# AddSubInv swaps the operators (`+` subtracts). Evaluating the AddSub circuit on AddSubInv's data tells how
# much of that task the same edges carry.

# %%
cross = cf.evaluate_circuit(tuned, after, other, progress=False)
own = cf.evaluate_circuit(tuned, cf.find_circuit(tuned, other, progress=False), other, progress=False)
print(
    f"AddSub's circuit on AddSubInv: faithfulness {cross['faithfulness']:.2f} "
    f"(AddSubInv's own circuit: {own['faithfulness']:.2f})"
)

# %% [markdown]
# ## 7. The numbers, as a file
#
# `--results FILE` writes every number printed above, rounded as printed, to a JSON file with the command that
# made it (the README's walkthrough numbers come from `docs/results/walkthrough.json`, written this way).

# %%
if args.results:
    import json
    from datetime import datetime, timezone

    from circuitft.files import atomic_write_text

    numbers = {
        "untuned": {k: round(before_eval[k], 2) for k in ("faithfulness", "model_accuracy", "circuit_accuracy")},
        "tuned": {k: round(after_eval[k], 2) for k in ("faithfulness", "model_accuracy", "circuit_accuracy")},
        "edges": {"untuned": change["edges_a"], "tuned": change["edges_b"], "shared": change["edges_shared"]},
        "edge_jaccard": round(change["edge_jaccard"], 2),
        "node_jaccard": round(change["node_jaccard"], 2),
        "top_k": change["top_k"],
        "edge_change": round(change["edge_change"], 2),
        "top_k_jaccard": round(change["top_k_jaccard"], 2),
        "cross_task_faithfulness": round(cross["faithfulness"], 2),
        "own_faithfulness": round(own["faithfulness"], 2),
    }
    record = {
        "name": "walkthrough",
        "command": f"python demo/walkthrough.py --model {args.model} --steps {steps} --results {args.results}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "model": args.model,
        "seed": 0,
        "numbers": numbers,
    }
    atomic_write_text(args.results, json.dumps(record, indent=2) + "\n")
    print(f"numbers: {args.results}")
