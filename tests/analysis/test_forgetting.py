"""The forgetting curve in the analysis: forgetting_auc by hand, the pair table and fits with and without
accuracy.jsonl, one-line errors for a damaged file."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from circuitft.analysis.forgetting import forgetting_auc, read_accuracy
from circuitft.analysis.runs import read_run
from circuitft.analysis.sweep import fit_all, forgetting_curve_table, pairs_table
from circuitft.errors import DataError

from .synth import write_curve, write_run
from .test_sweep import PAIRS, make_sweep

CURVE_STEPS = [10, 12, 15, 17, 20]  # the end of A, then every quarter of B's 10 steps (ForgettingCurve's)


def made_up(end_a: float, end_b: float, bend: float) -> list[float]:
    """A's accuracy at CURVE_STEPS: from end_a to end_b, sagging by ``bend`` in the middle."""
    f = (np.array(CURVE_STEPS) - 10) / 10
    return list(end_a + (end_b - end_a) * f - bend * f * (1 - f))


def curves_for(root, pairs=PAIRS) -> dict[tuple[str, str], list[float]]:
    out = {}
    for n, ((a, b), ((ma, _), (mb, _))) in enumerate(pairs.items()):
        acc = made_up(ma, mb, 0.1 * n)
        out[(a, b)] = acc
        points = {(s, a): v for s, v in zip(CURVE_STEPS, acc, strict=True)}
        points |= {(s, a): ma for s in (2, 5, 7)}  # A's own stage: not part of B's curve
        points |= {(s, b): 0.5 for s in CURVE_STEPS[1:]}
        write_curve(root / f"{a}__{b}", points)
    return out


def test_forgetting_auc_by_hand() -> None:
    # drops below 0.9: 0, .2, .4, .3, .6 at steps 10..30 by 5: 5 * (.1 + .3 + .35 + .45) = 6.0, over 20 steps
    assert forgetting_auc([10, 15, 20, 25, 30], [0.9, 0.7, 0.5, 0.6, 0.3], 10, 30) == pytest.approx(0.3)
    # uneven spacing, order of the points does not matter: 2 * 0 + 18 * (0 + .6) / 2 = 5.4 over 20
    assert forgetting_auc([30, 10, 12], [0.2, 0.8, 0.8], 10, 30) == pytest.approx(0.27)
    assert forgetting_auc([10, 30], [0.5, 0.7], 10, 30) == pytest.approx(-0.1)  # A improved while B trained
    assert math.isnan(forgetting_auc([10, 20], [0.9, 0.5], 10, 30))  # B not finished: no area yet
    assert math.isnan(forgetting_auc([15, 30], [0.9, 0.5], 10, 30))  # no point at the end of A
    assert math.isnan(forgetting_auc([], [], 10, 30))


def test_pairs_and_fit_with_forgetting_curves(tmp_path) -> None:
    graphs = make_sweep(tmp_path)
    curves = curves_for(tmp_path)
    runs = [read_run(p) for p in sorted(tmp_path.iterdir())]
    pairs = pairs_table(runs)
    by_pair = pairs.set_index(["A", "B"])
    for (a, b), acc in curves.items():
        drop = acc[0] - np.array(acc)
        expected = np.trapezoid(drop, CURVE_STEPS) / 10
        assert by_pair.loc[(a, b), "forgetting_auc"] == pytest.approx(expected)
        assert by_pair.loc[(a, b), "curve_splits"] == "val+test"
    long = forgetting_curve_table(runs)
    assert len(long) == len(PAIRS) * len(CURVE_STEPS)
    one = long[(long["A"] == "Abs") & (long["B"] == "Sub")]
    assert list(one["step"]) == CURVE_STEPS and list(one["fraction_B"]) == pytest.approx(
        [0, 0.2, 0.5, 0.7, 1]
    )
    assert list(one["accuracy"]) == pytest.approx(curves[("Abs", "Sub")])
    fits = fit_all(pairs)
    inc = pairs[pairs["included"]]
    auc = fits["auc"]
    assert (auc["x"], auc["y"], auc["n"], auc["left_out"]) == ("jaccard", "forgetting_auc", 5, 1)
    assert auc["r"] == pytest.approx(np.corrcoef(inc["jaccard"], inc["forgetting_auc"])[0, 1])
    assert auc["outcome_rows"] == "forgetting curve on val+test"
    assert graphs  # the graphs the Jaccards come from were written


def test_runs_without_accuracy_jsonl_report_as_before(tmp_path) -> None:
    make_sweep(tmp_path)
    runs = [read_run(p) for p in sorted(tmp_path.iterdir())]
    assert all(r.accuracy.empty for r in runs)
    pairs = pairs_table(runs)
    assert pairs["forgetting_auc"].isna().all() and (pairs["curve_splits"] == "").all()
    assert forgetting_curve_table(runs).empty
    fits = fit_all(pairs)
    assert "auc" not in fits and {"headline", "prospective", "model_rel", "circuit_rel", "loss"} <= set(fits)


def test_unfinished_curve_and_missing_end_of_a(tmp_path) -> None:
    write_run(tmp_path / "A__B", [("A", 10), ("B", 10)], {10: {"A": (0.9, 0.9)}, 20: {"A": (0.5, 0.5)}})
    write_curve(tmp_path / "A__B", {(10, "A"): 0.9, (12, "A"): 0.8, (15, "A"): 0.6})  # killed mid-B
    run = read_run(tmp_path / "A__B")
    assert math.isnan(pairs_table([run])["forgetting_auc"].iloc[0])
    assert list(forgetting_curve_table([run])["fraction_B"]) == pytest.approx([0, 0.2, 0.5])
    write_curve(tmp_path / "A__B", {(12, "A"): 0.8, (20, "A"): 0.6})  # no point at the end of A: no curve
    run = read_run(tmp_path / "A__B")
    assert forgetting_curve_table([run]).empty and math.isnan(pairs_table([run])["forgetting_auc"].iloc[0])


GOOD = {"step": 10, "task": "A", "trained_task": "A", "accuracy": 0.5, "n_correct": 5, "n_rows": 10}


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"step": 10, "task": "A", "accuracy": 0.5', r"line 2: not valid JSON"),
        ("[1, 2]", r"line 2: expected a JSON object, got list"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "accuracy"}), r"line 2: missing key 'accuracy'"),
        (json.dumps({**GOOD, "step": -1}), r"line 2: 'step' must be a non-negative integer, got -1"),
        (json.dumps({**GOOD, "n_rows": "ten"}), r"line 2: 'n_rows' must be a non-negative integer"),
        (json.dumps({**GOOD, "accuracy": 1.5}), r"line 2: 'accuracy' must be a number in \[0, 1\], got 1.5"),
        (json.dumps({**GOOD, "task": 3}), r"line 2: 'task' must be a task name"),
        (json.dumps({**GOOD, "splits": "val"}), r"line 2: 'splits' must be a list"),
        (json.dumps({**GOOD, "step": 2}), r"line 2: a second record of step 2, task 'A'"),
    ],
)
def test_damaged_accuracy_jsonl_names_file_and_line(tmp_path, line: str, match: str) -> None:
    path = tmp_path / "circuits" / "accuracy.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({**GOOD, "step": 2}) + "\n" + line + "\n")
    with pytest.raises(DataError, match=r"accuracy\.jsonl: " + match) as err:
        read_accuracy(tmp_path)
    assert "\n" not in str(err.value)


def test_accuracy_jsonl_not_text_or_not_a_file(tmp_path) -> None:
    path = tmp_path / "circuits" / "accuracy.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"accuracy\.jsonl: not a UTF-8 text file"):
        read_accuracy(tmp_path)
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match=r"accuracy\.jsonl: not a regular file"):
        read_accuracy(tmp_path)
    path.rmdir()
    assert read_accuracy(tmp_path).empty  # absent: an empty table
    write_curve(tmp_path, {(4, "B"): 0.25, (2, "A"): 1.0})
    table = read_accuracy(tmp_path)
    assert isinstance(table, pd.DataFrame) and list(zip(table["step"], table["task"], strict=True)) == [
        (2, "A"),
        (4, "B"),
    ]


# ---- circuitft report ----------------------------------------------------------------------------------
def _report(capsys, *args) -> tuple[int, str]:
    from circuitft.cli import main as cli_main

    rc = cli_main(["report", *[str(a) for a in args], "--max_run_sections", "0"])
    return rc, capsys.readouterr().err


def test_report_with_forgetting_curves(tmp_path, capsys) -> None:
    make_sweep(tmp_path / "sweep")
    curves_for(tmp_path / "sweep")
    rc, err = _report(capsys, tmp_path / "sweep", "--out", tmp_path / "rep")
    assert rc == 0, err
    rep = tmp_path / "rep"
    runs = [read_run(p) for p in sorted((tmp_path / "sweep").iterdir())]
    written = pd.read_csv(rep / "tables" / "forgetting_curve.csv")
    expected = forgetting_curve_table(runs)
    assert list(written.columns) == ["run", "A", "B", "step", "fraction_B", "accuracy", "n_rows"]
    assert len(written) == len(expected) == len(PAIRS) * len(CURVE_STEPS)
    assert np.allclose(written["accuracy"], expected["accuracy"].astype(float))
    pairs = pd.read_csv(rep / "tables" / "pairs.csv")
    assert np.allclose(pairs["forgetting_auc"], pairs_table(runs)["forgetting_auc"])
    fit = json.loads((rep / "fit.json").read_text())
    assert fit["auc"]["n"] == 5 and fit["auc"]["y"] == "forgetting_auc"
    page = (rep / "index.html").read_text()
    assert (
        'src="figures/sweep_forgetting_curves.png"' in page
        and (rep / "figures" / "sweep_forgetting_curves.svg").is_file()
    )
    assert '<tr id="fit-auc">' in page


def test_report_without_forgetting_curves(tmp_path, capsys) -> None:
    make_sweep(tmp_path / "sweep")
    rc, err = _report(capsys, tmp_path / "sweep", "--out", tmp_path / "rep")
    assert rc == 0, err
    rep = tmp_path / "rep"
    assert not (rep / "tables" / "forgetting_curve.csv").exists()
    assert not (rep / "figures" / "sweep_forgetting_curves.png").exists()
    assert "auc" not in json.loads((rep / "fit.json").read_text())
    assert pd.read_csv(rep / "tables" / "pairs.csv")["forgetting_auc"].isna().all()


def test_report_refuses_a_damaged_accuracy_jsonl(tmp_path, capsys) -> None:
    make_sweep(tmp_path / "sweep")
    curves_for(tmp_path / "sweep")
    path = tmp_path / "sweep" / "Abs__Sub" / "circuits" / "accuracy.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:25]
    path.write_text("\n".join(lines) + "\n")
    rc, err = _report(capsys, tmp_path / "sweep", "--out", tmp_path / "rep")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: line 4: not valid JSON" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # no report, no temp folder
