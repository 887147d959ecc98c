"""``circuitft report``'s options as a dataclass that checks itself (the command's parser is derived from it)."""

from __future__ import annotations

from dataclasses import dataclass

from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.errors import ConfigError


@dataclass
class ReportOptions:
    """What the report compares and how much it draws (``circuitft report``'s options, checked here).

    Args:
        threshold: pairs whose A circuit accuracy at the end of A is below this are left out of the fits
        top_frac: share of edges (by |score|) compared by edge change and Jaccard (default as the prior work)
        max_run_sections: draw per-run figures for at most N runs
        max_edges: edges drawn in a circuit diagram (largest |score|)
    """

    threshold: float = 0.8
    top_frac: float = DEFAULT_TOP_FRAC
    max_run_sections: int = 4
    max_edges: int = 300

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"--threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 < self.top_frac <= 1.0:
            raise ConfigError(f"--top_frac must be in (0, 1], got {self.top_frac}")
        if self.max_run_sections < 0 or self.max_edges < 1:
            raise ConfigError("--max_run_sections must be >= 0 and --max_edges >= 1")
