"""``circuitft export CKPT --out DIR``: a training checkpoint's LoRA adapter as a standard peft folder.

    circuitft export runs/demo/checkpoints/last.ckpt --out adapters/demo-last

``DIR`` gets ``adapter_config.json`` + ``adapter_model.safetensors`` (load with
``PeftModel.from_pretrained(base, DIR)`` or ``circuitft circuit --adapter DIR``), ``circuitft.json`` (base model
spec, step, task position, hyper-parameters) and, when the checkpoint lies in a run folder, that run's
``config.yaml``. The folder is written beside ``DIR`` and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitft.commands.args import make_parser, parse
from circuitft.errors import ConfigError
from circuitft.files import atomic_folder
from circuitft.owned import mark
from circuitft.quiet import quiet_framework
from circuitft.runfolder import CONFIG, RunFolder


def build_parser(prog: str = "circuitft export") -> Any:
    """The command's argument parser (jsonargparse: ``--config FILE``, ``--print_config``)."""
    p = make_parser(prog, "Write a checkpoint's LoRA adapter as a peft adapter folder.")
    p.add_argument("ckpt", type=Path, metavar="CKPT", help="circuitft training checkpoint (.ckpt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist, or be empty)")
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft export``; returns the exit status (user errors raise CircuitftError)."""
    args = parse(build_parser(f"circuitft {name}"), argv)
    if isinstance(args, int):  # --help, --print_config
        return args

    quiet_framework()  # transformers' is_gradient_checkpointing FutureWarning, named there
    out = export_adapter(args.ckpt, args.out)
    print(f"wrote the adapter of {args.ckpt} to {out} (load it with PeftModel.from_pretrained or --adapter)")
    return 0


def export_adapter(ckpt: str | Path, out: str | Path) -> Path:
    """Write ``ckpt``'s adapter, ``circuitft.json`` and the run's ``config.yaml`` to ``out``; returns ``out``."""
    from circuitft.models.checkpoint import load_checkpoint_file, model_from_checkpoint

    ckpt, out = Path(ckpt), Path(out)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt}: file not found")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not an empty folder; choose another")
    loaded = model_from_checkpoint(ckpt)
    raw = load_checkpoint_file(ckpt)
    data_state = raw.get("TaskStreamDataModule") or {}
    info: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "model": loaded.spec,
        "global_step": raw.get("global_step"),
        "task": _task_name(data_state),
        "step_in_task": data_state.get("step_in_task"),
        "hyper_parameters": _plain(raw.get("hyper_parameters") or {}),
    }
    config = RunFolder(ckpt.resolve().parent.parent).config

    def write(tmp: Path) -> None:
        mark(tmp, "export")
        loaded.model.save_pretrained(tmp)
        (tmp / "circuitft.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if config.is_file():
            shutil.copyfile(config, tmp / CONFIG)

    if out.is_dir():  # an empty folder the user made: replace it
        out.rmdir()
    atomic_folder(write, out)
    return out


def _task_name(state: dict[str, Any]) -> str | None:
    tasks, i = state.get("tasks"), state.get("task_idx")
    return tasks[i] if isinstance(tasks, list) and isinstance(i, int) and 0 <= i < len(tasks) else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


__all__ = ["build_parser", "export_adapter", "main"]
