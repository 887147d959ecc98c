"""Names that become paths: validated, and resolved inside their root."""

from __future__ import annotations

import pytest

from circuitft.cli import main
from circuitft.errors import ConfigError
from circuitft.names import check_name, inside


@pytest.mark.parametrize("name", ["AddSub", "add_sub-2.v1+x~", "a", "IOI"])
def test_good_names_pass(name):
    assert check_name(name, "k") == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a\\b", ".hidden", "..", "a b", "x\n", "é", None, 3])
def test_bad_names_name_the_key(name):
    with pytest.raises(ConfigError) as err:
        check_name(name, "data.tasks[0].name")
    assert str(err.value).startswith("data.tasks[0].name: ") and "\n" not in str(err.value)


def test_inside_refuses_escapes_and_symlinks(tmp_path):
    assert inside(tmp_path, "a", "b.txt") == tmp_path / "a" / "b.txt"
    with pytest.raises(ConfigError, match="k: .* lies outside"):
        inside(tmp_path / "root", "../x", key="k")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="lies outside"):
        inside(tmp_path / "root", "link", "x")


def test_traversing_task_name_is_refused_before_anything_is_written(tmp_path, capsys):
    from pathlib import Path

    quick = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"
    tasks = '[{"task": "AddSub", "name": "../../../../x", "steps": 2, "n_train": 8, "n_val": 4}]'
    root = tmp_path / "run"
    assert (
        main(["fit", "--config", str(quick), "--trainer.default_root_dir", str(root), "--data.tasks", tasks])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: data.tasks[0].name: '../../../../x' is not a valid name"), err
    assert not root.exists() and not (tmp_path / "x").exists()


def test_sweep_run_and_permutation_names_are_checked(tmp_path):
    from pathlib import Path

    from circuitft.commands.sweep import load_sweep

    quick = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"
    f = tmp_path / "s.yaml"
    f.write_text(f"fit_config: {quick}\nruns: [{{name: ../evil}}]\n")
    with pytest.raises(ConfigError, match=r"runs\[0\]\.name: '../evil' is not a valid name"):
        load_sweep(f)
    f.write_text(f"fit_config: {quick}\npermutations: {{tasks: [Add, a/b], length: 2}}\n")
    with pytest.raises(ConfigError, match=r"permutations\.tasks\[1\]"):
        load_sweep(f)


def test_circuit_callback_refuses_a_path_as_dirname():
    from circuitft.callbacks import CircuitCallback

    with pytest.raises(ConfigError, match="CircuitCallback dirname"):
        CircuitCallback(dirname="../elsewhere")
