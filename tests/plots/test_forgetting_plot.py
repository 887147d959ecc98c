"""The forgetting-curves figure: one line per pair with its points, one colour per first task."""

from __future__ import annotations

import pandas as pd

from circuitft import plots


def test_one_line_per_pair_coloured_by_first_task() -> None:
    rows = []
    for run, a, accs in (
        ("X__Y", "X", [0.9, 0.5, 0.4]),
        ("X__Z", "X", [0.9, 0.8, 0.7]),
        ("Y__X", "Y", [0.6, 0.6, 0.1]),
    ):
        rows += [
            {
                "run": run,
                "A": a,
                "B": "?",
                "step": 10 + 5 * i,
                "fraction_B": i / 2,
                "accuracy": v,
                "n_rows": 20,
            }
            for i, v in enumerate(accs)
        ]
    curve = pd.DataFrame(rows).sample(frac=1, random_state=0)  # the figure sorts each pair by fraction_B
    fig = plots.forgetting_curves(curve, title="curves")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3
    drawn = {tuple(line.get_ydata()): line for line in lines}
    assert set(drawn) == {(0.9, 0.5, 0.4), (0.9, 0.8, 0.7), (0.6, 0.6, 0.1)}
    assert all(list(line.get_xdata()) == [0, 0.5, 1] for line in lines)
    assert drawn[(0.9, 0.5, 0.4)].get_color() == drawn[(0.9, 0.8, 0.7)].get_color()  # both start with X
    assert drawn[(0.6, 0.6, 0.1)].get_color() != drawn[(0.9, 0.5, 0.4)].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A = X", "A = Y"]
    assert ax.get_title() == "curves"
    assert plots.figure_to_png(fig)[:4] == b"\x89PNG"


def test_no_curves_says_so() -> None:
    fig = plots.forgetting_curves(pd.DataFrame(columns=["run", "A", "fraction_B", "accuracy"]))
    assert "no forgetting curves recorded" in fig.axes[0].texts[0].get_text()
