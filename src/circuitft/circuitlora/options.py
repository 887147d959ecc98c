"""The ``model.circuit_lora`` options of a CircuitLoRA plan and their one-line checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from circuitft.circuitlora.plan import ASSIGNMENTS, RULES
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.attribute import check_method
from circuitft.eap.metrics import check_metric
from circuitft.errors import ConfigError

PLANS = ("uniform", "circuit")


@dataclass
class CircuitLoRAOptions:
    """How a CircuitLoRA plan is made (``model.lora_plan: circuit``).

    Probe: ``probe_steps`` optimizer steps of LoRA rank ``probe_rank`` (learning rate ``probe_lr``, default
    ``model.lr``) on ``probe_task`` (default: the first task of the stream), same batches as the run.
    Circuits: ``method``/``metric``/``ig_steps`` on the first ``n_examples`` validation pairs, the top
    ``top_frac`` of the edges. Layers: ``assignment`` of edges (``destination``, ``source``, ``both``),
    critical layers by ``rule`` (``top_k`` with ``k``, or ``mean_std``). Adapter: ``r_critical`` /
    ``alpha_critical`` on the critical layers' modules, ``r_other`` / ``alpha_other`` elsewhere, and
    ``critical_lr_scale`` times the learning rate for the critical modules' parameters.
    """

    probe_steps: int = 20
    probe_rank: int = 2
    probe_lr: float | None = None
    probe_task: str | None = None
    assignment: str = "destination"
    rule: str = "top_k"
    k: int = 5
    r_critical: int = 32
    alpha_critical: float = 64.0
    r_other: int = 8
    alpha_other: float = 16.0
    critical_lr_scale: float = 1.0
    method: str = "EAP-IG-inputs"
    metric: str = "kl"
    ig_steps: int = 5
    n_examples: int = 32
    batch_size: int = 8
    top_frac: float = DEFAULT_TOP_FRAC
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (recorded in the plan file)."""
        return asdict(self)


def as_options(value: CircuitLoRAOptions | dict[str, Any] | None) -> CircuitLoRAOptions:
    """Options from a dataclass, a mapping (unknown keys: one-line error) or None (defaults)."""
    if value is None:
        return CircuitLoRAOptions()
    if isinstance(value, CircuitLoRAOptions):
        return value
    known = set(CircuitLoRAOptions.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(
            f"model.circuit_lora: unknown option(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    for key, v in value.items():
        _check_type(key, v, str(CircuitLoRAOptions.__dataclass_fields__[key].type))
    return CircuitLoRAOptions(**value)


def _check_type(key: str, value: Any, annotation: str) -> None:
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None and "None" in kinds:
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }
    if not any(ok.get(k, False) for k in kinds):
        raise ConfigError(f"model.circuit_lora.{key} must be {annotation}, got {value!r}")


def check_options(opts: CircuitLoRAOptions, n_layers: int) -> None:
    """Raise a one-line :class:`ConfigError` for an option out of range for a model of ``n_layers`` layers."""
    where = "model.circuit_lora"
    for name in ("probe_rank", "r_critical", "r_other"):
        if int(getattr(opts, name)) < 1:
            raise ConfigError(f"{where}.{name} must be at least 1, got {getattr(opts, name)}")
    if opts.probe_steps < 1:
        raise ConfigError(f"{where}.probe_steps must be at least 1, got {opts.probe_steps}")
    if opts.assignment not in ASSIGNMENTS:
        raise ConfigError(
            f"{where}.assignment must be one of {', '.join(ASSIGNMENTS)}, got {opts.assignment!r}"
        )
    if opts.rule not in RULES:
        raise ConfigError(f"{where}.rule must be one of {', '.join(RULES)}, got {opts.rule!r}")
    if opts.rule == "top_k" and not 1 <= opts.k <= n_layers:
        raise ConfigError(f"{where}.k must be between 1 and the model's {n_layers} layers, got {opts.k}")
    for name in ("alpha_critical", "alpha_other", "critical_lr_scale"):
        if not getattr(opts, name) > 0:
            raise ConfigError(f"{where}.{name} must be positive, got {getattr(opts, name)}")
    if opts.probe_lr is not None and not opts.probe_lr > 0:
        raise ConfigError(f"{where}.probe_lr must be positive, got {opts.probe_lr}")
    if not 0 < opts.top_frac <= 1:
        raise ConfigError(f"{where}.top_frac must be in (0, 1], got {opts.top_frac}")
    if opts.n_examples < 1 or opts.batch_size < 1 or opts.ig_steps < 1:
        raise ConfigError(f"{where}.n_examples, batch_size and ig_steps must be at least 1")

    check_method(opts.method)
    check_metric(opts.metric)
