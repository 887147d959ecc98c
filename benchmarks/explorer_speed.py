"""The explorer's size and speed in headless Chromium: file size, time to first picture, redraw after a
slider move (script time and time to the next frame).

    python benchmarks/explorer_speed.py runs/demo/report/explorer.html
    python benchmarks/explorer_speed.py --synthetic      # a SmolLM2-shaped run (30 layers, 9 heads, 3 kv
                                                         # groups; 70,651 edges), 2 tasks x 7 steps, random scores
    python benchmarks/explorer_speed.py runs/demo/report/explorer.html --screenshot docs/explorer.png

Run it on an idle machine: the numbers go in the README ("The circuit explorer").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from explorer.cdp import Chromium  # noqa: E402

SLIDE = """(p => new Promise(done => { const s = document.querySelector('.cx-size'); s.value = p;
  const t = performance.now(); s.dispatchEvent(new Event('input')); const script = performance.now() - t;
  requestAnimationFrame(() => requestAnimationFrame(() => done([Number(document.querySelector('.cx-size-n').value),
  Number(document.getElementById('explorer').getAttribute('data-drawn')), script, performance.now() - t]))); }))"""


def synthetic(folder: Path) -> Path:
    """Write a SmolLM2-shaped run and its explorer page into ``folder``; returns the page."""
    from analysis.synth import write_run
    from circuitft.analysis.runs import read_run
    from circuitft.eap.graph import GraphConfig
    from circuitft.explorer.page import write_explorers

    cfg = GraphConfig(n_layers=30, n_heads=9, n_kv_heads=3, d_model=576)
    steps = {s: {"AddSub": (0.5, 0.4), "AddSubInv": (0.3, 0.2)} for s in range(0, 241, 40)}
    write_run(folder / "run", [("AddSub", 120), ("AddSubInv", 120)], steps, cfg=cfg)
    (folder / "report").mkdir()
    write_explorers([read_run(folder / "run")], folder / "report")
    return folder / "report" / "explorer.html"


def screenshot(page_path: Path, out: Path, width: int = 1400, height: int = 1000) -> None:
    """Save a PNG of the page as it first shows (the last analysed step of the first task)."""
    import base64

    with Chromium(width, height) as browser:
        page = browser.open(page_path.resolve().as_uri())
        page.wait("document.getElementById('explorer').getAttribute('data-first-picture-ms')")
        page.wait("new Promise(d => requestAnimationFrame(() => requestAnimationFrame(() => d(true))))")
        shot = page.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {out}")


def measure(page_path: Path, repeats: int) -> None:
    size = page_path.stat().st_size
    firsts, scripts, frames = [], [], []
    for _ in range(repeats):
        with Chromium() as browser:
            page = browser.open(page_path.resolve().as_uri())
            firsts.append(
                float(page.wait("document.getElementById('explorer').getAttribute('data-first-picture-ms')"))
            )
            for position in (1000, 900, 800, 700, 600, 500):
                asked, drawn, script, frame = page.eval(f"{SLIDE}({position})")
                assert asked == drawn, (asked, drawn)
                scripts.append(script)
                frames.append(frame)
            assert page.errors == [], page.errors
    print(f"{page_path}: {size / 1e6:.2f} MB")
    print(
        f"first picture (ms after navigation start): median {statistics.median(firsts):.0f}, n={len(firsts)}"
    )
    print(
        f"redraw after a slider move, script (ms): median {statistics.median(scripts):.1f}, max {max(scripts):.1f}, n={len(scripts)}"
    )
    print(f"redraw after a slider move, to the next frame (ms): median {statistics.median(frames):.1f}, "
          f"max {max(frames):.1f}, n={len(frames)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path, help="an explorer.html")
    parser.add_argument("--synthetic", action="store_true", help="measure a SmolLM2-shaped synthetic run")
    parser.add_argument("--repeats", type=int, default=3, help="page loads (6 slider moves each)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of PAGE here instead of measuring")
    args = parser.parse_args()
    if args.screenshot is not None:
        if args.page is None:
            parser.error("--screenshot needs an explorer.html")
        screenshot(args.page, args.screenshot)
        return
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            measure(synthetic(Path(tmp)), args.repeats)
    elif args.page is not None:
        measure(args.page, args.repeats)
    else:
        parser.error("give an explorer.html or --synthetic")


if __name__ == "__main__":
    main()
