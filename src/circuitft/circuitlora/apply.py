"""``model.lora_plan: circuit`` inside a run: make or reuse the plan, chart it, wrap the planned adapter.

A fresh fit probes (:func:`circuitft.circuitlora.probe.make_plan`), writes ``circuit_lora.json`` to the run
folder atomically and logs a bar chart of the layer scores to TensorBoard (``circuit_lora/layer_scores``,
step 0). A run that resumes (``--ckpt_path``, or a run folder that already holds checkpoints) and
``validate``/``test`` reuse the saved plan instead of probing again. Under DDP rank 0 probes while the
others wait, and every rank reads the same file. The checkpoint records the adapter's rank and alpha
patterns, so :func:`circuitft.models.checkpoint.model_from_checkpoint` rebuilds the same adapter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from circuitft.circuitlora.options import CircuitLoRAOptions, as_options, check_options
from circuitft.dtypes import AUTOCAST_DTYPES
from circuitft.eap.graph import GraphConfig
from circuitft.eap.sites import model_sites
from circuitft.errors import ConfigError
from circuitft.files import atomic_write_text
from circuitft.runfolder import RunFolder

PLAN_FILE = "circuit_lora.json"


def check_plannable(model: torch.nn.Module, options: dict[str, Any] | None) -> CircuitLoRAOptions:
    """The checked options for ``model``; one-line errors for bad options or a model without circuits."""
    opts = as_options(options)
    try:
        model_sites(model)
    except ConfigError as err:
        raise ConfigError(f"model.lora_plan circuit needs circuits: {err}") from None
    check_options(opts, GraphConfig.from_hf_config(model.config).n_layers)
    return opts


def write_plan(path: str | Path, record: dict[str, Any]) -> None:
    """Write the plan JSON atomically."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_plan(path: str | Path) -> dict[str, Any]:
    """A plan file written by :func:`write_plan`; one-line error when missing or malformed."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"plan file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"plan file {path} is not valid JSON ({err})") from None
    keys = ("r", "alpha", "rank_pattern", "alpha_pattern", "ranks", "critical_lr_scale")
    missing = [k for k in keys if k not in record] if isinstance(record, dict) else list(keys)
    if missing:
        raise ConfigError(f"plan file {path} is not a CircuitLoRA plan (missing {', '.join(missing)})")
    return record


def run_folder(trainer: Any) -> Path:
    """The run folder (where the TensorBoard events and ``config.yaml`` go)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def _resuming(trainer: Any) -> bool:
    if trainer.ckpt_path:
        return True
    cb = trainer.checkpoint_callback
    folder = getattr(cb, "dirpath", None) or RunFolder(run_folder(trainer)).checkpoints
    return any(Path(folder).glob("*.ckpt"))


def _autocast(trainer: Any) -> torch.dtype | None:
    precision = str(getattr(trainer, "precision", ""))
    return AUTOCAST_DTYPES.get(precision)


def probe_task(module: Any, dm: Any) -> str:
    """The stream task the probe run trains (``model.circuit_lora.probe_task``, default the first)."""
    task = module.circuit_lora.probe_task or dm.names[0]
    if task not in dm.names:
        raise ConfigError(
            f"model.circuit_lora.probe_task {task!r} is not in the stream ({', '.join(dm.names)})"
        )
    return task


def stream_plan(module: Any, trainer: Any, dm: Any) -> dict[str, Any]:
    """The plan record of a fit config's stream (``dm`` set up): the probe run on its probe task, with the
    trainer's device and autocast, as ``fit`` and ``circuitft circuitlora plan`` both make it."""
    from circuitft.circuitlora.probe import make_plan  # transformers' model code: `fit --help` stays without

    task = probe_task(module, dm)
    hp = module.hparams
    return make_plan(
        module.model,
        dm.task_pairs(task, "train"),
        dm.task_pairs(task, "val"),
        module.circuit_lora,
        batch_size=dm.batch_size,
        data_seed=dm.task_seed(dm.names.index(task)),
        lr=hp.lr,
        target_modules=hp.target_modules,
        device=trainer.strategy.root_device,
        autocast=_autocast(trainer),
        extra={"model": hp.model, "task": task},
    )


def plan_for_run(module: Any, trainer: Any, stage: str) -> dict[str, Any]:
    """Make (rank 0, fresh fit) or reuse the plan of this run; returns the plan record (every rank)."""
    path = run_folder(trainer) / PLAN_FILE
    reuse = path.is_file() and (stage != "fit" or _resuming(trainer))
    if trainer.is_global_zero and not reuse:
        record = stream_plan(module, trainer, trainer.datamodule)
        write_plan(path, record)
        log_chart(trainer, record)
    trainer.strategy.barrier("circuit-lora-plan")
    return read_plan(path)


def log_chart(trainer: Any, record: dict[str, Any]) -> None:
    """Bar chart of the layer scores (critical layers highlighted) to every TensorBoard logger, step 0."""
    loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "TensorBoardLogger"]
    if not loggers:
        return
    from matplotlib.figure import Figure  # only when a plan is charted: `fit --help` stays without it

    scores, critical = record["layer_scores"], set(record["critical_layers"])
    fig = Figure(figsize=(max(4.0, 0.3 * len(scores) + 2), 3))  # its own Agg canvas: no pyplot global state
    ax = fig.subplots()
    colors = ["tab:red" if i in critical else "tab:gray" for i in range(len(scores))]
    ax.bar(range(len(scores)), scores, color=colors)
    ax.set_xlabel("layer")
    ax.set_ylabel("D_L (sum of edge deltas)")
    ax.set_title(f"CircuitLoRA layer scores ({record['assignment']}); red: critical")
    fig.tight_layout()
    for lg in loggers:
        lg.experiment.add_figure("circuit_lora/layer_scores", fig, global_step=0, close=False)
        lg.experiment.flush()


def wrap_planned(module: Any, record: dict[str, Any], source: str) -> None:
    """Replace ``module.model`` (the unwrapped base) by the base with the planned adapter."""
    from circuitft.circuitlora.probe import lora_shapes  # (see stream_plan)
    from circuitft.models.lora import wrap_lora  # peft: only when the planned adapter is built

    hp = module.hparams
    peft_model = wrap_lora(
        module.model,
        int(record["r"]),
        float(record["alpha"]),
        hp.lora_dropout,
        hp.target_modules,
        rank_pattern=record["rank_pattern"],
        alpha_pattern=record["alpha_pattern"],
    )
    if sorted(lora_shapes(peft_model)) != sorted(record["ranks"]):
        raise ConfigError(f"{source} was made for other LoRA modules than model.target_modules gives")
    module.model = peft_model.train()


def lr_scales(module: Any) -> dict[str, float]:
    """Learning-rate multiplier of each trainable parameter: ``critical_lr_scale`` for critical modules."""
    plan = getattr(module, "lora_plan_record", None)
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    if not plan or float(plan["critical_lr_scale"]) == 1.0:
        return dict.fromkeys(names, 1.0)
    scale = float(plan["critical_lr_scale"])
    critical = tuple(f".{m}.lora_" for m in plan["rank_pattern"])
    return {n: scale if any(c in f".{n}" for c in critical) else 1.0 for n in names}
