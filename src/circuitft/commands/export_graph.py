"""``circuitft export-graph GRAPH_FILE --out DIR``: a circuit as GraphML and GEXF, for Gephi and Cytoscape.

    circuitft export-graph runs/demo/circuits/step000240/AddSub.safetensors --out graphs/addsub-240

writes ``DIR/circuit.graphml`` and ``DIR/circuit.gexf``: the circuit's edges (``--top N``: the N strongest
edges by |score| instead) between the model's nodes, with node attributes name, kind, layer, head, x, y and
edge attributes name, score, input (q/k/v/mlp/logits), layer, head, in_circuit
(:mod:`circuitft.explorer.export`). ``GRAPH_FILE`` is a ``.safetensors`` or reference-library ``.json`` graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitft.commands.args import make_parser, parse
from circuitft.errors import ConfigError


def build_parser(prog: str = "circuitft export-graph") -> Any:
    """The command's argument parser (jsonargparse: ``--config FILE``, ``--print_config``)."""
    p = make_parser(prog, "Write a circuit as GraphML and GEXF files (Gephi, Cytoscape).")
    p.add_argument("graph_file", type=Path, metavar="GRAPH_FILE", help="graph file (.safetensors or .json)")
    p.add_argument("--out", type=Path, required=True, help="output folder (circuit.graphml, circuit.gexf)")
    p.add_argument(
        "--top", type=int | None, default=None, help="export the N strongest edges instead of the circuit"
    )
    return p


def main(name: str, argv: Sequence[str]) -> int:
    """Run ``circuitft export-graph``; returns the exit status (user errors raise CircuitftError)."""
    args = parse(build_parser(f"circuitft {name}"), argv)
    if isinstance(args, int):  # --help, --print_config
        return args
    from circuitft.eap.io import load_graph
    from circuitft.explorer.export import write_graph_files

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    graph = load_graph(args.graph_file)
    paths = write_graph_files(graph, args.out, args.top)
    what = f"its {args.top} strongest edges" if args.top else f"its {graph.count_edges()} circuit edges"
    print(f"wrote {args.graph_file} ({what}) to {paths[0]} and {paths[1]}")
    return 0


__all__ = ["build_parser", "main"]
