"""Choosing a circuit from scored edges: top-n, top fraction, threshold, greedy; then pruning.

All selections rank *real* edges by ``|score|`` (the signed score with ``absolute=False``), reset the
circuit, write ``graph.in_graph`` and ``graph.nodes_in_graph`` and return the graph. With ``prune=True``
(the default) the result is pruned, so the requested size is an upper bound.

Node liveness (also used by :func:`prune`). A node is in the circuit iff it has an outgoing circuit edge
to a live destination and (except ``input``) an incoming circuit edge from a live source; ``logits`` is
always in. Destinations belong to nodes through :attr:`GraphConfig.destination_owners`: a head owns its
q input and its key/value group's k and v inputs. With grouped-query attention a k/v destination is
shared by every head of its group, so:

- a head counts as having an incoming edge when its own q input **or its group's** k or v input has one;
- a group k/v destination stays live while **any** head of its group is in the circuit.

Pruning keeps exactly the nodes that lie on a path ``input -> ... -> logits`` of circuit edges (which is
the fixed point of "repeatedly drop nodes lacking an incoming or outgoing edge, then the edges touching
dropped nodes"), computed in one forward and one backward sweep over the layers.
"""

from __future__ import annotations

import heapq
import math
from numbers import Real

import torch

from circuitft.eap import DEFAULT_TOP_FRAC as DEFAULT_TOP_FRAC  # re-exported: the default of top_frac
from circuitft.eap.graph import Graph, GraphConfig
from circuitft.eap.settings import check_edge_count, n_from_frac
from circuitft.eap.settings import check_selection as check_selection  # re-exported
from circuitft.eap.topk import top_k_mask
from circuitft.errors import ConfigError, DataError


def select(
    graph: Graph,
    top_n: int | None = None,
    top_frac: float | None = None,
    threshold: float | None = None,
    greedy_n: int | None = None,
    absolute: bool = True,
    prune: bool = True,
) -> Graph:
    """Select a circuit with exactly one of the options (see module docstring); returns ``graph``.

    - ``top_n``: the n best edges; ``top_frac``: the ``int(top_frac * n_edges)`` best edges;
    - ``threshold``: every edge with ``|score| >= threshold``; ``greedy_n``: :func:`apply_greedy`.

    Raises :class:`ConfigError` when no option or several are given or a value is out of range.
    """
    given = check_selection(
        graph.n_edges, top_n=top_n, top_frac=top_frac, threshold=threshold, greedy_n=greedy_n
    )
    if top_n is not None:
        apply_topn(graph, top_n, absolute=absolute, prune=prune)
    elif top_frac is not None:
        apply_topn(graph, n_from_frac(top_frac, graph.n_edges), absolute=absolute, prune=prune)
    elif threshold is not None:
        apply_threshold(graph, threshold, absolute=absolute, prune=prune)
    else:
        apply_greedy(graph, greedy_n, absolute=absolute, prune=prune)  # type: ignore[arg-type]
    [(option, value)] = given.items()
    graph.meta["selection"] = {"option": option, "value": value, "absolute": absolute, "prune": prune}
    return graph


def select_default(graph: Graph, top_frac: float = DEFAULT_TOP_FRAC, absolute: bool = True) -> str | None:
    """The default circuit: the top ``top_frac`` of the edges, pruned; returns None, or a one-line note when the
    graph is so small that pruning leaves none of those edges.

    Then the circuit is the smallest top-n (``n > int(top_frac * n_edges)``) whose pruned circuit keeps at
    least one edge (a connected input -> logits path), found by bisection: the top-n sets are nested, so the
    pruned circuit only grows with n, and all edges always keep one. ``graph.meta["selection"]`` records it as
    ``top_n`` with the fraction asked for under ``default_top_frac``.
    """
    n_asked = max(1, int(top_frac * graph.n_edges))
    apply_topn(graph, n_asked, absolute=absolute)
    if graph.count_edges() > 0:
        graph.meta["selection"] = {
            "option": "top_frac",
            "value": top_frac,
            "absolute": absolute,
            "prune": True,
        }
        return None
    empty, kept = n_asked, graph.n_edges  # the top ``empty`` edges prune to nothing, the top ``kept`` do not
    while kept - empty > 1:
        mid = (empty + kept) // 2
        apply_topn(graph, mid, absolute=absolute)
        empty, kept = (empty, mid) if graph.count_edges() > 0 else (mid, kept)
    apply_topn(graph, kept, absolute=absolute)
    graph.meta["selection"] = {"option": "top_n", "value": kept, "absolute": absolute, "prune": True,
                               "default_top_frac": top_frac}  # fmt: skip
    return (
        f"the top {100 * top_frac:g}% of the edges ({n_asked} of {graph.n_edges}) keep no edge after pruning on "
        f"this small graph: the circuit is the smallest that keeps a connected one, the top {kept} edges "
        f"({graph.count_edges()} after pruning)"
    )


def apply_topn(graph: Graph, n: int, absolute: bool = True, prune: bool = True) -> Graph:
    """Keep the ``n`` highest-ranked real edges (ties broken by position); returns ``graph``."""
    check_edge_count(n, graph.n_edges, "top_n")
    return _finish(graph, top_k_mask(_ranking(graph, absolute), n), prune)


def apply_threshold(graph: Graph, threshold: float, absolute: bool = True, prune: bool = True) -> Graph:
    """Keep every real edge with ``|score| >= threshold`` (signed score if not ``absolute``)."""
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold):
        raise ConfigError(f"threshold must be a number, got {threshold!r}")
    rank = _ranking(graph, absolute)
    return _finish(graph, rank >= float(threshold), prune)


def apply_greedy(graph: Graph, n: int, absolute: bool = True, prune: bool = True) -> Graph:
    """Greedy selection from the logits up (the reference library's ``apply_greedy``).

    Candidates start as the edges into ``logits``; the best remaining candidate is taken ``n`` times;
    when a taken edge brings in a new parent node, the edges into that node's inputs (q, its group's k/v,
    or the MLP input) become candidates. Circuits are connected by construction.
    """
    cfg = graph.cfg
    check_edge_count(n, graph.n_edges, "greedy_n")
    rank = _ranking(graph, absolute)
    prev = cfg.prev_index.tolist()
    order = torch.argsort(rank, dim=0, descending=True, stable=True)  # per destination, best source first
    values = rank.gather(0, order)
    columns: dict[int, tuple[list[float], list[int]]] = {}
    heap: list[tuple[float, int, int]] = []

    def open_destination(d: int) -> None:
        if d in columns or prev[d] == 0:
            return
        columns[d] = (values[: prev[d], d].tolist(), order[: prev[d], d].tolist())
        heapq.heappush(heap, (-columns[d][0][0], d, 0))

    inputs = _node_inputs(cfg)
    node_in = [False] * (cfg.n_forward + 1)
    node_in[-1] = True
    open_destination(cfg.logits_index)
    chosen_src: list[int] = []
    chosen_dst: list[int] = []
    while len(chosen_src) < n and heap:
        _, d, pos = heapq.heappop(heap)
        vals, srcs = columns[d]
        s = srcs[pos]
        chosen_src.append(s)
        chosen_dst.append(d)
        if pos + 1 < len(srcs):
            heapq.heappush(heap, (-vals[pos + 1], d, pos + 1))
        if not node_in[s]:
            node_in[s] = True
            for dd in inputs[s]:
                open_destination(dd)
    keep = torch.zeros(rank.shape, dtype=torch.bool)
    keep[torch.tensor(chosen_src, dtype=torch.long), torch.tensor(chosen_dst, dtype=torch.long)] = True
    graph.in_graph = keep
    graph.nodes_in_graph = torch.tensor(node_in, dtype=torch.bool)
    return prune_graph(graph) if prune else graph


def prune(graph: Graph) -> Graph:
    """Keep only nodes on an ``input -> logits`` path of circuit edges, and the edges between them.

    Equal to the reference ``prune()`` loop run to a fixed point (see module docstring for GQA); never adds
    anything; writes ``in_graph`` and ``nodes_in_graph`` and returns ``graph``.
    """
    cfg = graph.cfg
    edges = graph.in_graph.cpu() & cfg.real_edge_mask
    reach, coreach = _reachable(cfg, edges), _coreachable(cfg, edges)
    nodes = reach & coreach
    nodes[-1] = True
    graph.nodes_in_graph = nodes
    graph.in_graph = edges & nodes[: cfg.n_forward, None] & _live_destinations(cfg, nodes)[None, :]
    return graph


prune_graph = prune  # alias usable where a parameter named ``prune`` shadows the function


# ---- helpers ----------------------------------------------------------------------------------------
def _ranking(graph: Graph, absolute: bool) -> torch.Tensor:
    """Scores used for ranking, with -inf off the real-edge mask."""
    scores = graph.scores.detach().float().cpu()
    if torch.isnan(scores).any():
        raise DataError(f"graph has {int(torch.isnan(scores).sum())} NaN scores; cannot select a circuit")
    rank = scores.abs() if absolute else scores.clone()
    return rank.masked_fill_(~graph.cfg.real_edge_mask, -math.inf)


def _finish(graph: Graph, keep: torch.Tensor, prune: bool) -> Graph:
    """Set the circuit to edges ``keep`` (within the real mask) and its nodes; prune if asked."""
    graph.in_graph = keep.cpu() & graph.cfg.real_edge_mask
    if prune:
        return prune_graph(graph)
    graph.nodes_in_graph = nodes_with_in_and_out(graph.cfg, graph.in_graph)
    return graph


def _node_inputs(cfg: GraphConfig) -> list[list[int]]:
    """For each node (into ``node_names``), the destinations it reads."""
    inputs: list[list[int]] = [[] for _ in range(cfg.n_forward + 1)]
    dst, node = cfg.destination_owners
    for d, v in zip(dst.tolist(), node.tolist(), strict=True):
        inputs[v].append(d)
    return inputs


def nodes_with_in_and_out(cfg: GraphConfig, edges: torch.Tensor) -> torch.Tensor:
    """One unpruned pass: nodes with an outgoing edge and (except input) an incoming edge; logits in."""
    dst, node = cfg.destination_owners
    has_in = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
    has_in[node[edges.any(0)[dst]]] = True
    has_in[0] = True
    nodes = has_in.clone()
    nodes[: cfg.n_forward] &= edges.any(1)
    nodes[-1] = True
    return nodes


def _live_destinations(cfg: GraphConfig, nodes: torch.Tensor) -> torch.Tensor:
    """[n_backward] bool: destinations with at least one owner node in ``nodes`` (logits always)."""
    dst, node = cfg.destination_owners
    live = torch.zeros(cfg.n_backward, dtype=torch.bool)
    live[dst[nodes[node]]] = True
    live[-1] = True
    return live


def _reachable(cfg: GraphConfig, edges: torch.Tensor) -> torch.Tensor:
    """[n_forward + 1] bool: nodes reachable from ``input`` along circuit edges (logits included)."""
    H, G = cfg.n_heads, cfg.groups
    reach = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
    reach[0] = True
    group = cfg.head_group
    for layer in range(cfg.n_layers):
        ap, base = cfg.attn_prev(layer), cfg.q_index(layer, 0)
        fed = (edges[:ap, base : base + H + 2 * G] & reach[:ap, None]).any(0)
        reach[ap : ap + H] = fed[:H] | fed[H : H + G][group] | fed[H + G :][group]
        mp = cfg.mlp_prev(layer)
        reach[ap + H] = (edges[:mp, cfg.mlp_in_index(layer)] & reach[:mp]).any()
    reach[-1] = (edges[:, -1] & reach[:-1]).any()
    return reach


def _coreachable(cfg: GraphConfig, edges: torch.Tensor) -> torch.Tensor:
    """[n_forward + 1] bool: nodes from which ``logits`` is reachable along circuit edges."""
    H, G = cfg.n_heads, cfg.groups
    co = torch.zeros(cfg.n_forward + 1, dtype=torch.bool)
    co[-1] = True
    live = torch.zeros(cfg.n_backward, dtype=torch.bool)  # destinations whose node co-reaches
    live[-1] = True
    per_group = H // G
    for layer in reversed(range(cfg.n_layers)):
        ap, base = cfg.attn_prev(layer), cfg.q_index(layer, 0)
        mlp = cfg.mlp_index(layer)
        co[mlp] = (edges[mlp] & live).any()
        live[cfg.mlp_in_index(layer)] = co[mlp]
        heads = (edges[ap : ap + H] & live[None, :]).any(1)
        co[ap : ap + H] = heads
        by_group = heads.view(G, per_group).any(1)
        live[base : base + H] = heads
        live[base + H : base + H + G] = by_group
        live[base + H + G : base + H + 2 * G] = by_group
    co[0] = (edges[0] & live).any()
    return co
