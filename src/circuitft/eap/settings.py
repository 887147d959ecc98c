"""The attribution settings: how a circuit is found, selected and evaluated, declared and checked once.

:class:`CircuitSettings` is the one definition of these settings and of their checks: it checks itself when
it is built (one-line :class:`~circuitft.errors.ConfigError` naming the option, with the bounds of
:mod:`circuitft.limits`). ``circuitft circuit`` derives its options from the dataclass fields (jsonargparse,
``add_class_arguments``), the :class:`~circuitft.callbacks.circuit.CircuitCallback` builds it from its flat
init arguments, and the Python API and the CircuitLoRA probe from theirs; all of them then hand it to
:func:`circuitft.eap.pipeline.find_circuit`.

The names and checks of each setting live here too (methods, metrics, accuracies, buffer dtypes, selection
options, size curves), without torch, so that a command builds its parser and refuses a bad option at once;
the engine modules import them from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Literal

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.errors import ConfigError
from circuitft.limits import MAX_BATCH_SIZE, MAX_IG_STEPS, check_count

SIZE_OPTIONS = ("top_n", "top_frac", "threshold", "greedy_n")
DEFAULT_METHOD = "EAP-IG-inputs"
BUFFER_DTYPE_NAMES = (
    "float32",
    "bfloat16",
    "float16",
    "float64",
)  # the names of circuitft.dtypes.DTYPES (tested)

# cross-task faithfulness is on by default for streams of 2 to 8 tasks (the callback; the sweep's prefix plan)
CROSS_TASK_AUTO = (2, 8)


METHODS = ("EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted", "exact")


def check_method(method: str) -> str:
    """``method`` if known, else a :class:`ConfigError` listing the valid names."""
    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; valid methods: {', '.join(METHODS)}")
    return method


METRICS = ("kl", "logit_diff", "prob_diff", "logprob")


def check_metric(metric: str) -> str:
    """``metric`` if it is known, else a :class:`ConfigError` listing the valid names."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    return metric


ACCURACIES = (
    "exact_match",
    "first_token",
)  # how an answer counts as right (see eap.metrics.answer_exact_match)


def check_accuracy(accuracy: str) -> bool:
    """Whether ``accuracy`` scores the first answer token only; :class:`ConfigError` for an unknown name."""
    if accuracy not in ACCURACIES:
        raise ConfigError(f"accuracy must be 'exact_match' or 'first_token', got {accuracy!r}")
    return accuracy == "first_token"


def check_selection(
    n_edges: int | None,
    top_n: int | None = None,
    top_frac: float | None = None,
    threshold: float | None = None,
    greedy_n: int | None = None,
) -> dict[str, float]:
    """Validate selection options without selecting (e.g. before an expensive attribution).

    Returns ``{option: value}`` for the one option given; raises :class:`ConfigError` otherwise. With
    ``n_edges`` None only the model-independent checks run (sign, range), not the bound by the edge count.
    """
    options = {"top_n": top_n, "top_frac": top_frac, "threshold": threshold, "greedy_n": greedy_n}
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        raise ConfigError("choose a circuit size: one of top_n, top_frac, threshold, greedy_n")
    if len(given) > 1:
        raise ConfigError(f"give only one of top_n, top_frac, threshold, greedy_n (got {', '.join(given)})")
    for option in ("top_n", "greedy_n"):
        if option in given:
            check_edge_count(given[option], n_edges, option)  # type: ignore[arg-type]
    if top_frac is not None:
        n_from_frac(top_frac, n_edges if n_edges is not None else 1 << 62)
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold)
    ):
        raise ConfigError(f"threshold must be a number, got {threshold!r}")
    return given


def n_from_frac(top_frac: float, n_edges: int) -> int:
    """``int(top_frac * n_edges)`` after checking ``0 < top_frac <= 1`` (:class:`ConfigError` otherwise)."""
    if isinstance(top_frac, bool) or not isinstance(top_frac, Real) or not 0 < top_frac <= 1:
        raise ConfigError(f"top_frac must be in (0, 1], got {top_frac!r}")
    n = int(top_frac * n_edges)
    if n < 1:
        raise ConfigError(f"top_frac {top_frac} of {n_edges} edges selects no edge; use a larger fraction")
    return n


def check_edge_count(n: int, n_edges: int | None, option: str) -> None:
    """ConfigError unless ``n`` is a positive integer, at most ``n_edges`` (when known)."""
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ConfigError(f"{option} must be a positive integer, got {n!r}")
    if n_edges is not None and n > n_edges:
        raise ConfigError(f"{option} {n} exceeds the {n_edges} edges of the graph")


SIZES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def check_sizes(sizes: Sequence[float], where: str = "sizes") -> tuple[float, ...]:
    """``sizes`` as a sorted tuple after checking each is a number in (0, 1] (ConfigError otherwise)."""
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
            raise ConfigError(f"{where}: each size is a fraction of the edges in (0, 1], got {s!r}")
        out.append(float(s))
    if not out:
        raise ConfigError(f"{where}: give at least one size (or turn the size curve off)")
    return tuple(sorted(set(out)))


DEFAULT_SAMPLES = 3


# 0.5% ... 50% of the edges: the full graph's faithfulness is 1 by construction, and below 0.5% a circuit
# rarely reaches 0.8; each point costs about one patched forward pass per batch
DEFAULT_CURVE = tuple(f for f in SIZES if 0.005 <= f < 1.0)


def parse_size_curve(text: str | bool | None, where: str = "--size_curve") -> tuple[float, ...]:
    """Size-curve fractions from an option: auto or true (the default fractions), false (none) or a comma
    list (see :func:`one_sided` for auto)."""
    if text is None or text is True:
        return DEFAULT_CURVE
    if text is False:
        return ()
    value = str(text).strip().lower()
    if value in ("auto", "true", "yes", "1", "default"):
        return DEFAULT_CURVE
    if value in ("false", "no", "0", "none", "off"):
        return ()
    try:
        fracs = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"{where} {text!r}: expected auto, true, false or fractions of the edges such as 0.01,0.05,0.1"
        ) from None
    return check_sizes(fracs, where)


def one_sided(text: str | bool | None) -> bool:
    """Whether a ``--size_curve`` value asks for the cheaper one-sided curve (``auto``, the default): only
    the points on the side of the main circuit that decides the smallest circuit reaching 0.8."""
    return text is None or str(text).strip().lower() == "auto"


MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class CircuitSettings:
    """How a circuit is found (attribution), chosen (selection) and evaluated.

    Args:
        method: attribution method: EAP-IG-inputs (null: this one), EAP, EAP-IG-activations, clean-corrupted,
            exact
        ig_steps: integrated-gradient steps
        metric: task metric: kl, logit_diff, prob_diff, logprob
        accuracy: model/circuit accuracy: every answer token (exact_match) or the first one only (the prior
            work's)
        batch_size: examples per batch
        dtype: attribution buffers: float32 (null: this one) or bfloat16 (half the memory)
        top_n: keep the N best edges by |score| (before pruning); one size option at most
        top_frac: keep this fraction of edges (0.05 when no size option is given)
        threshold: keep edges with |score| >= T
        greedy_n: greedy selection of N edges from the logits up
        baseline_samples: random circuits of the same size evaluated as a baseline (0: none)
        size_curve: faithfulness at several circuit sizes (0.5% ... 50% of the edges), for the smallest circuit
            reaching 0.8: auto (only the sizes on the side of the circuit that decides it), true (all), false,
            mib (MIB's fractions 0.1% ... 100%, for cpr and cmd) or fractions such as 0.01,0.05,0.1
        heldout_frac: hold out this share of the rows (the last ones): the circuit is found on the others and
            also scored on these
        seed: random seed (also seeds the random circuits)
        where: how messages name an option: ``--`` (``--ig_steps``, the command), ``CircuitCallback `` or
            empty (the API); not an option itself
    """

    method: str | None = None
    ig_steps: int = 5
    metric: str = "kl"
    accuracy: Literal["exact_match", "first_token"] = "exact_match"
    batch_size: int = 8
    dtype: str | None = None
    top_n: int | None = None
    top_frac: float | None = None
    threshold: float | None = None
    greedy_n: int | None = None
    baseline_samples: int = 3
    size_curve: str = "auto"
    heldout_frac: float | None = None
    seed: int = 0
    where: str = field(default="--", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        if self.method is not None:
            check_method(self.method)
        check_metric(self.metric)
        check_count(self.ig_steps, f"{w}ig_steps", MAX_IG_STEPS)
        if isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool) and self.batch_size < 1:
            raise ConfigError(f"{w}batch_size must be positive, got {self.batch_size}")
        check_count(self.batch_size, f"{w}batch_size", MAX_BATCH_SIZE)
        if self.dtype is not None and self.dtype not in BUFFER_DTYPE_NAMES:
            raise ConfigError(f"{w}dtype {self.dtype!r} is not one of {', '.join(BUFFER_DTYPE_NAMES)}")
        if self.accuracy not in ACCURACIES:
            raise ConfigError(f"{w}accuracy must be 'exact_match' or 'first_token', got {self.accuracy!r}")
        if self.baseline_samples < 0:
            raise ConfigError(
                f"{w}baseline_samples must be 0 (no baseline) or more, got {self.baseline_samples}"
            )
        self.curve  # noqa: B018  (parses, so a bad --size_curve fails here)
        if self.heldout_frac is not None and not 0 < self.heldout_frac < 1:
            raise ConfigError(
                f"{w}heldout_frac must be between 0 and 1 (a share of the rows), got {self.heldout_frac}"
            )
        given = [f"{w}{n}" for n in SIZE_OPTIONS if getattr(self, n) is not None]
        if len(given) > 1:
            options = ", ".join(f"{w}{n}" for n in SIZE_OPTIONS)
            raise ConfigError(f"give only one of {options}; got {' and '.join(given)}")
        check_selection(None, **self.sizes)
        if self.threshold is not None and self.threshold < 0:
            raise ConfigError(
                f"{w}threshold must be >= 0 (edges with |score| >= T are kept), got {self.threshold}"
            )

    # ---- derived -----------------------------------------------------------------------------------------
    @property
    def attribution_method(self) -> str:
        """The method attribution runs (``method``, or EAP-IG-inputs when none is given)."""
        return self.method or DEFAULT_METHOD

    @property
    def resize(self) -> bool:
        """Whether a size option is given (else the default circuit: the top 5%, widened when too small)."""
        return any(getattr(self, n) is not None for n in SIZE_OPTIONS)

    @property
    def sizes(self) -> dict[str, float | None]:
        """The selection options as :func:`circuitft.eap.select.select` takes them (``top_frac`` 0.05 when
        none is given)."""
        sizes = {n: getattr(self, n) for n in SIZE_OPTIONS}
        if not self.resize:
            sizes["top_frac"] = DEFAULT_TOP_FRAC
        return sizes

    @property
    def curve(self) -> tuple[float, ...]:
        """The size curve's fractions of the edges (empty: no size curve)."""
        if str(self.size_curve).strip().lower() == "mib":
            return MIB_FRACTIONS
        return parse_size_curve(self.size_curve, f"{self.where}size_curve")

    @property
    def one_sided(self) -> bool:
        """Whether the size curve is the cheaper one-sided one (``auto``, see
        :func:`circuitft.eap.baseline.one_sided`)."""
        return one_sided(self.size_curve)

    @property
    def uses_ig_steps(self) -> bool:
        """Whether the method integrates (its records carry ``ig_steps``)."""
        return "IG" in self.attribution_method


__all__ = ["DEFAULT_METHOD", "SIZE_OPTIONS", "CircuitSettings"]
