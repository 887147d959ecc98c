"""A walk through circuitft's analysis API on one model, without training.

    python demo/walkthrough.py                       # SmolLM2-135M (embedded), 16 IOI prompts
    python demo/walkthrough.py --model tiny-gpt2     # seconds, random weights

Steps: make seeded task data -> tokenize it once into PromptPairs -> score every edge with EAP-IG ->
keep the top 5% of edges (pruned) -> evaluate the circuit (faithfulness, accuracy) -> compare with plain
EAP -> save the graph in the reference JSON format and as safetensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from circuitft.data.tasks import make_pairs
from circuitft.eap.attribute import attribute
from circuitft.eap.evaluate import evaluate, faithfulness
from circuitft.eap.graph import Graph
from circuitft.eap.io import save_graph
from circuitft.eap.overlap import overlap
from circuitft.eap.select import select
from circuitft.models import load_model
from circuitft.models.merge import merged_copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="IOI")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metric", default="logit_diff")
    ap.add_argument("--out", default="runs/walkthrough")
    args = ap.parse_args()

    loaded = load_model(args.model)
    model = merged_copy(loaded.model)  # the analysis form: a frozen copy (a LoRA adapter would be merged)
    pairs = make_pairs(args.task, loaded.tokenizer, n=args.n, seed=args.seed)
    print(f"{args.task}: {len(pairs)} prompt pairs ({pairs.n_dropped} resampled for token-length mismatch)")
    print(f"  e.g. {pairs.rows[0].clean!r} -> {pairs.rows[0].answer!r}  /  {pairs.rows[0].corrupted!r}")

    graphs = {}
    for method in ("EAP-IG-inputs", "EAP"):
        graph = Graph.from_model(model)
        attribute(model, graph, pairs, method=method, metric=args.metric, ig_steps=5, batch_size=8)
        select(graph, top_frac=0.05)
        summary = faithfulness(evaluate(model, graph, pairs, metric=args.metric, batch_size=8))
        graphs[method] = graph
        print(
            f"{method:>14}: {int(graph.in_graph.sum())} of {graph.n_edges} edges, "
            f"faithfulness {summary['faithfulness']:.3f}, circuit accuracy {summary['circuit_accuracy']:.2f} "
            f"(model {summary['model_accuracy']:.2f})"
        )

    ig = graphs["EAP-IG-inputs"]
    flat = ig.scores.abs().masked_fill(~ig.cfg.real_edge_mask, 0).flatten()
    print("strongest EAP-IG edges:")
    for i in flat.topk(8).indices.tolist():
        src, dst = divmod(i, ig.cfg.n_backward)
        print(f"  {ig.cfg.edge_name(src, dst):<28} {ig.scores[src, dst].item():+.4f}")
    o = overlap(graphs["EAP-IG-inputs"], graphs["EAP"])
    print(f"EAP vs EAP-IG circuits: edge Jaccard {o['edge_jaccard']:.2f}, node Jaccard {o['node_jaccard']:.2f}")

    out = Path(args.out)
    save_graph(ig, out / "graph.json")
    save_graph(ig, out / "graph.safetensors")
    print(f"saved {out}/graph.json and graph.safetensors")


if __name__ == "__main__":
    main()
