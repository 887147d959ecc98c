"""``circuitft circuitlora plan --config FIT.yaml [fit options] [--output PATH]``: a CircuitLoRA plan alone.

Reads a fit config (the same options as ``circuitft fit``; ``model.circuit_lora`` holds the plan's
options, ``model.lora_plan`` may be either value), runs the probe and the two circuits on the first task
(or ``model.circuit_lora.probe_task``) and writes the plan JSON (default: ``circuit_lora.json`` in the run
folder, ``trainer.default_root_dir``) without training the planned adapter. The plan gives the uniform rank
with about the same trainable parameter count (``parameters.uniform_rank_equal_budget``) for a
comparison run. It refuses to replace the plan of a run folder that already holds checkpoints.

``plan``'s options are parsed by jsonargparse through fit's LightningCLI parser, which also declares
``--output``; ``circuitft circuitlora plan --help`` lists them all.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentError

from circuitft.commands.args import check_config_files, one_line
from circuitft.errors import ConfigError
from circuitft.owned import check_owned, kind_of, mark
from circuitft.runfolder import RunFolder

USAGE = "usage: circuitft circuitlora plan --config FIT.yaml [--FIT.OPTION VALUE ...] [--output PATH]"


def plan(argv: Sequence[str]) -> Path:
    """Make the plan of the fit config in ``argv``; returns the path written."""
    check_config_files(argv)
    from circuitft.circuitlora.apply import PLAN_FILE, probe_task, stream_plan, write_plan  # torch: here only
    from circuitft.commands.fit_cli import plan_cli  # Lightning, the model and the probe: this command only

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    try:
        cli = plan_cli(argv)
    except ArgumentError as err:
        raise ConfigError(one_line(str(err))) from None
    output = cli.config.get("output")
    module, dm, trainer = cli.model, cli.datamodule, cli.trainer
    root = RunFolder(trainer.default_root_dir)
    path = Path(output) if output else root.root / PLAN_FILE
    if output is None and any(root.checkpoints.glob("*.ckpt")):
        raise ConfigError(
            f"{root.root} already holds a run trained with its plan; give --output for a new plan"
        )
    if output is None:  # the plan goes into the run folder: the same rule as fit's
        check_owned(root.root, "run", "--trainer.default_root_dir", what="write its plan into")
    probe_task(module, dm)  # a task outside the stream fails before the data is made
    dm.tokenizer = module.tokenizer
    dm.setup("fit")
    record = stream_plan(module, trainer, dm)
    write_plan(path, record)
    if output is None and kind_of(root.root) != "run":
        mark(root.root, "run")  # the fit that follows trains in this folder
    return path


def main(name: str, argv: Sequence[str]) -> int:
    """Entry point of ``circuitft circuitlora``."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__.split("\n\n", 1)[1].strip())
        return 0 if args else 2
    if args[0] != "plan":
        raise ConfigError(f"circuitlora: unknown action {args[0]!r}; {USAGE}")
    path = plan(args[1:])
    record = json.loads(path.read_text())
    params = record["parameters"]
    print(
        f"wrote {path}: critical layers {record['critical_layers']}, {params['plan']} trainable parameters "
        f"(uniform rank {params['uniform_rank_equal_budget']}: {params['uniform_equal_budget']})"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main("circuitlora", sys.argv[1:]))
