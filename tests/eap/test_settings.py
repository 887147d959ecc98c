"""CircuitSettings: the one definition of the attribution settings and their checks (one line naming the
option as each caller names it), torch-free, and what the callback, the API and the command build from it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from circuitft.callbacks import CircuitCallback
from circuitft.dtypes import DTYPES
from circuitft.eap import DEFAULT_TOP_FRAC
from circuitft.eap.settings import BUFFER_DTYPE_NAMES, SIZES, CircuitSettings
from circuitft.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ig_steps": 0}, "ig_steps must be at least 1, got 0"),
        ({"ig_steps": 10**6}, "ig_steps must be at most 1,000"),
        ({"batch_size": 0}, "batch_size must be positive, got 0"),
        ({"batch_size": 10**7}, "batch_size must be at most 65,536"),
        ({"dtype": "int8"}, "dtype 'int8' is not one of float32, bfloat16"),
        ({"accuracy": "top5"}, "accuracy must be 'exact_match' or 'first_token'"),
        ({"baseline_samples": -1}, "baseline_samples must be 0 (no baseline) or more"),
        ({"heldout_frac": 1.5}, "heldout_frac must be between 0 and 1"),
        ({"threshold": -1.0}, "threshold must be >= 0"),
        ({"size_curve": "many"}, "size_curve 'many': expected auto, true, false or fractions"),
        ({"size_curve": "0.5,2"}, r"size_curve: each size is a fraction of the edges in (0, 1], got 2.0"),
    ],
)
@pytest.mark.parametrize("where", ["--", "CircuitCallback ", ""])
def test_each_check_names_the_option_as_its_caller_does(kwargs, message, where) -> None:
    with pytest.raises(ConfigError) as err:
        CircuitSettings(**kwargs, where=where)
    text = str(err.value)
    assert "\n" not in text and text.startswith(where) and message in text


def test_names_shared_by_every_caller() -> None:
    with pytest.raises(
        ConfigError, match="unknown attribution method 'nope'; valid methods: EAP, EAP-IG-inputs"
    ):
        CircuitSettings(method="nope")
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        CircuitSettings(metric="bleu")
    with pytest.raises(ConfigError, match="give only one of --top_n, --top_frac, --threshold, --greedy_n"):
        CircuitSettings(top_n=3, top_frac=0.1)
    with pytest.raises(ConfigError, match=r"top_frac must be in \(0, 1\], got 1.5"):
        CircuitSettings(top_frac=1.5)
    assert BUFFER_DTYPE_NAMES == tuple(DTYPES)  # the names of the one dtype table


def test_derived_values() -> None:
    s = CircuitSettings()
    assert s.attribution_method == "EAP-IG-inputs" and s.uses_ig_steps and not s.resize
    assert s.sizes == {"top_n": None, "top_frac": DEFAULT_TOP_FRAC, "threshold": None, "greedy_n": None}
    assert s.one_sided and s.curve == (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    assert (
        CircuitSettings(size_curve="mib").curve[-1] == 1.0 and CircuitSettings(size_curve="false").curve == ()
    )
    assert CircuitSettings(method="EAP", top_n=4).resize and not CircuitSettings(method="EAP").uses_ig_steps


def test_the_callback_builds_the_settings_from_its_flat_arguments() -> None:
    cb = CircuitCallback(method="EAP", ig_steps=3, batch_size=2, dtype="float32", sizes=[0.5, 0.1])
    s = cb.settings
    assert isinstance(s, CircuitSettings)
    assert (s.method, s.ig_steps, s.batch_size, s.dtype, s.curve) == ("EAP", 3, 2, None, (0.1, 0.5))
    assert s.top_frac is None and not s.resize  # the default top 5%: the pipeline's default circuit
    assert CircuitCallback(top_n=7).settings.sizes["top_n"] == 7
    assert CircuitCallback().settings.curve == SIZES and CircuitCallback(sizes=False).settings.curve == ()
    with pytest.raises(ConfigError, match="^CircuitCallback ig_steps must be at least 1, got 0$"):
        CircuitCallback(ig_steps=0)


def test_importing_the_settings_needs_no_torch() -> None:
    """A command builds its parser and refuses a bad option before torch or the engine is imported."""
    code = "import sys, circuitft.eap.settings; print(sorted(m for m in ('torch', 'torchmetrics') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
