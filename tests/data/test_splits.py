"""Splits by construction: no clean prompt in two splits, for every built-in task and every config's sizes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from circuitft.data import tasks as task_registry
from circuitft.data.generators.spec import TaskSpec
from circuitft.data.rows import PromptRow
from circuitft.data.splits import SPLITS, split_of
from circuitft.data.tasks import get_task, make_rows, split_sizes, task_names
from circuitft.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def config_streams() -> list[tuple[str, list[dict]]]:
    """``(where, data.tasks)`` of every config in configs/: fit configs and every run of every sweep."""
    from circuitft.commands.sweep import load_sweep

    out = []
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if "fit_config" not in spec and "data" not in spec:
            continue  # an overlay with no task stream (configs/cluster/ddp.yaml)
        if "fit_config" not in spec:
            out.append((path.name, spec["data"]["tasks"]))
            continue
        fit_config, _, runs = load_sweep(path)
        base = yaml.safe_load(fit_config.read_text())["data"]["tasks"]
        for run in runs:
            tasks = base
            for i, arg in enumerate(run.args[:-1]):
                if arg == "--data.tasks":
                    tasks = yaml.safe_load(run.args[i + 1])
            out.append((f"{path.name}:{run.name}", tasks))
    return out


def _units(stages: list[dict]) -> list[dict]:
    keys = ("params", "n_train", "n_val", "n_test")
    out = []
    for s in stages:
        for m in s.get("mix") or [s]:
            m = {"task": m} if isinstance(m, str) else m
            out.append({**{k: s[k] for k in keys if k in s}, **m})
    return out


def _config_sizes() -> list[tuple[str, dict, dict[str, int]]]:
    seen, out = set(), []
    for where, stages in config_streams():
        for u in _units(stages):
            sizes = {"train": u.get("n_train", 1000), "val": u.get("n_val", 200)}
            sizes["test"] = u.get("n_test", sizes["val"])
            key = (u["task"], repr(sorted((u.get("params") or {}).items())), tuple(sizes.values()))
            if key not in seen:
                seen.add(key)
                out.append((where, u, sizes))
    return out


def _disjoint(name: str, sizes: dict[str, int], seed: int = 0, **params) -> dict[str, list[PromptRow]]:
    rows = {s: make_rows(name, n, seed, s, **params) for s, n in sizes.items() if n}
    prompts = {s: {r.clean for r in rs} for s, rs in rows.items()}
    for a in prompts:
        for b in prompts:
            if a < b:
                shared = prompts[a] & prompts[b]
                assert not shared, f"{name}: {len(shared)} prompts in {a} and {b}, e.g. {sorted(shared)[0]!r}"
        assert all(split_of(p) == a for p in prompts[a])
    return rows


@pytest.mark.parametrize("where, unit, sizes", _config_sizes(), ids=lambda x: x if isinstance(x, str) else "")
def test_no_prompt_in_two_splits_at_every_config_size(where, unit, sizes):
    rows = _disjoint(unit["task"], sizes, **(unit.get("params") or {}))
    for split in ("val", "test"):  # held-out rows are distinct problems
        if split in rows:
            assert len({r.clean for r in rows[split]}) == sizes[split], where


@pytest.mark.parametrize("name", task_names())
def test_every_builtin_task_is_split_and_sizes_are_exact(name):
    sizes = split_sizes(name)
    assert sizes is not None and all(v > 0 for v in sizes.values())
    want = {s: min(60, sizes[s]) for s in SPLITS}
    rows = _disjoint(name, want, seed=3)
    # exact: enumerated problems are the ones the drawer produces, in the right split
    spec = get_task(name)
    space = {p for lst in spec.problem_space(spec.resolve({})) for p in lst}
    assert all(r.clean in space for rs in rows.values() for r in rs)
    assert sum(sizes.values()) == len(space)


def test_split_is_stable_and_about_80_10_10():
    prompts = [f"{a}+{b}=" for a in range(100) for b in range(100)]
    counts = {s: sum(split_of(p) == s for p in prompts) for s in SPLITS}
    assert 0.78 < counts["train"] / 1e4 < 0.82 and 0.08 < counts["val"] / 1e4 < 0.12
    assert [split_of(p) for p in prompts[:50]] == [split_of(p) for p in list(prompts[:50])]


def test_split_independent_of_n_and_seed():
    val = make_rows("Add", 5, 1, "val") + make_rows("Add", 300, 2, "val")
    train = {r.clean for r in make_rows("Add", 3000, 7, "train")}
    assert all(split_of(r.clean) == "val" for r in val)
    assert not train & {r.clean for r in val}
    assert make_rows("Add", 20, 4, "train") == make_rows("Add", 20, 4, "train")
    assert make_rows("Add", 20, 4, "train") != make_rows("Add", 20, 5, "train")


def test_held_out_split_too_small_names_task_split_and_size():
    sizes = split_sizes("Add", lo=0, hi=9)
    with pytest.raises(
        DataError, match=rf"task Add: asked for 50 val rows, but the val split holds {sizes['val']}"
    ):
        make_rows("Add", 50, 0, "val", lo=0, hi=9)


def test_train_samples_with_replacement_past_its_size():
    size = split_sizes("Add", lo=0, hi=9)["train"]
    rows = make_rows("Add", 3 * size, 0, "train", lo=0, hi=9)
    distinct = {r.clean for r in rows}
    assert len(rows) == 3 * size and len(distinct) <= size and all(split_of(p) == "train" for p in distinct)
    assert (
        len({r.clean for r in make_rows("Add", size, 0, "train", lo=0, hi=9)}) == size
    )  # distinct while it can


def test_task_without_problem_space_hook_is_split_and_exhaustion_detected(monkeypatch):
    def draw(rng: random.Random, slot: int, p) -> PromptRow:
        a = rng.randint(0, 29)
        return PromptRow(f"x{a}=", f"x{(a + 1) % 30}=", str(a))

    monkeypatch.setitem(task_registry._REGISTRY, "Tiny", TaskSpec("Tiny", "x", draw))
    monkeypatch.setattr(task_registry, "MAX_STALL", 2000)
    assert split_sizes("Tiny") is None
    val = {split_of(f"x{a}=") for a in range(30)}
    n_val = sum(split_of(f"x{a}=") == "val" for a in range(30))
    assert "val" in val
    rows = make_rows("Tiny", n_val, 0, "val")
    assert sorted(r.clean for r in rows) == sorted(f"x{a}=" for a in range(30) if split_of(f"x{a}=") == "val")
    with pytest.raises(DataError, match=rf"Tiny: asked for {n_val + 1} val rows, .* only {n_val} distinct"):
        make_rows("Tiny", n_val + 1, 0, "val")
    assert len(make_rows("Tiny", 100, 0, "train")) == 100  # train falls back to sampling with replacement
