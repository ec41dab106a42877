"""`nightlab init DIR` (named after its folder, one initial commit, a clean tree for
`adopt`) and `nightlab init --here` (nightlab.toml for an existing hydra project, nothing
else touched, committed only with --commit)."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
from tests.conftest import cli

from nightlab.config import load_config
from nightlab.lab import init_lab
from nightlab.lab.schema import json_schema


def git(folder: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return out.stdout


def snapshot(folder: Path) -> dict[str, str]:
    """Every file but nightlab.toml/IDEA.md (the git index included), by content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("nightlab.toml", "IDEA.md") and "objects" not in p.parts
    }


def validate(lab: Path) -> None:
    load_config(lab)
    jsonschema.validate(tomllib.loads((lab / "nightlab.toml").read_text()), json_schema())


def test_init_names_the_lab_after_its_folder_and_commits_it(tmp_path):
    lab = tmp_path / "my lab"
    cli("init", str(lab), "--template", "digits")
    assert load_config(lab).lab.name == "my-lab"
    assert git(lab, "log", "--format=%s").strip() == "nightlab init: digits"
    assert git(lab, "status", "--porcelain") == ""  # what `adopt` needs: a clean tree
    assert "train.py" in git(lab, "ls-files")
    validate(lab)


def test_the_readme_path_init_run_adopt_works(tmp_path):
    lab = tmp_path / "mylab"
    cli("init", str(lab))
    cli("run", str(lab), "--max-trials", "4")
    proc = cli("adopt", str(lab), "4", check=False)  # before: "uncommitted changes in ..."
    assert proc.returncode == 0, proc.stderr
    subjects = git(lab, "log", "--format=%s").splitlines()
    assert subjects[-1] == "nightlab init: minimal" and "adopt trial 4 of mylab" in subjects[0]


@pytest.mark.parametrize(
    ("folder", "name"),
    [("café ünï", "cafe-uni"), ("a..b", "a-b"), ("日本", "lab"), ("-x.lock", "x-lock")],
)
def test_lab_names_are_safe_for_git_refs_and_mlflow(tmp_path, folder, name):
    path = tmp_path / folder
    path.mkdir()
    assert init_lab.lab_name(path) == name
    ok = subprocess.run(["git", "check-ref-format", f"refs/nightlab/{name}"])
    assert ok.returncode == 0
    assert init_lab.lab_name(path / "..") == init_lab.lab_name(tmp_path)  # `..` is resolved


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    proc = cli("init", str(tmp_path), check=False)
    assert proc.returncode == 2 and "not empty" in proc.stderr and "--here" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    alone = cli("init", str(tmp_path / "new"), "--commit", check=False)
    assert alone.returncode == 2 and "go with --here" in alone.stderr
    assert not (tmp_path / "new").exists()


def hydra_project(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "train.py").write_text(
        "import hydra\n\n"
        '@hydra.main(version_base=None, config_path="conf", config_name="config")\n'
        "def main(cfg):\n    print(f'val_loss={cfg.optim.lr}')\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    (folder / "conf" / "config.yaml").write_text(
        "defaults:\n  - _self_\noptim:\n  lr: 0.01\n  name: adam\nmodel:\n  width: 64\n"
        "use_bn: true\nout: ${hydra:runtime.cwd}\n"
    )
    git(folder, "init", "-q")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "mine")
    (folder / "notes.txt").write_text("staged, not mine to commit")
    git(folder, "add", "notes.txt")
    return folder


def test_here_proposes_knobs_from_the_hydra_config_and_touches_nothing_else(tmp_path):
    lab = hydra_project(tmp_path / "proj")
    before, head = snapshot(lab), git(lab, "rev-parse", "HEAD")
    cli("init", "--here", str(lab), "--metric", "val_loss", "--direction", "minimize")
    text = (lab / "nightlab.toml").read_text()
    assert '[search."optim.lr"]' in text and '[search."model.width"]' in text
    cfg = load_config(lab)
    validate(lab)
    assert cfg.trial.params == "hydra" and cfg.trial.command == "python train.py"
    assert cfg.objective.metric == "val_loss" and cfg.objective.direction == "minimize"
    assert cfg.lab.name == "proj"
    lr, width, bn = cfg.search["optim.lr"], cfg.search["model.width"], cfg.search["use_bn"]
    assert (lr.low, lr.high, lr.log, lr.default) == (pytest.approx(0.001), 0.1, True, 0.01)
    assert (width.low, width.high, width.default) == (32, 128, 64)
    assert bn.choices == [True, False] and bn.default is True
    assert cfg.search["optim.name"].choices == ["adam"]
    assert "out" not in cfg.search and not any(k.startswith("defaults") for k in cfg.search)
    assert snapshot(lab) == before and git(lab, "rev-parse", "HEAD") == head
    status = git(lab, "status", "--porcelain").splitlines()
    assert sorted(status) == ["?? IDEA.md", "?? nightlab.toml", "A  notes.txt"]
    again = cli("init", "--here", str(lab), "--metric", "m", "--direction", "maximize", check=False)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_here_with_commit_commits_exactly_the_two_files(tmp_path):
    lab = hydra_project(tmp_path / "proj")
    before = snapshot(lab)
    cli("init", "--here", str(lab), "--metric", "acc", "--direction", "maximize", "--commit")
    files = git(lab, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(files) == ["IDEA.md", "nightlab.toml"]
    assert git(lab, "status", "--porcelain").splitlines() == ["A  notes.txt"]  # still staged
    after = snapshot(lab)
    assert {k: v for k, v in after.items() if not k.startswith(".git")} == {
        k: v for k, v in before.items() if not k.startswith(".git")
    }


def test_here_without_a_metric_and_no_terminal_fails_with_one_line(tmp_path):
    lab = hydra_project(tmp_path / "proj")
    proc = cli("init", "--here", str(lab), check=False)
    assert proc.returncode == 2 and "--metric" in proc.stderr and "--direction" in proc.stderr
    assert not (lab / "nightlab.toml").exists()


def test_here_asks_for_the_metric_on_a_terminal(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nightlab.lab import cli_init
    from nightlab.lab.cli import app

    lab = hydra_project(tmp_path / "proj")
    monkeypatch.setattr(cli_init, "_terminal", lambda: True)
    result = CliRunner().invoke(app, ["init", "--here", str(lab)], input="val_loss\nminimize\n")
    assert result.exit_code == 0, result.output
    cfg = load_config(lab)
    assert cfg.objective.metric == "val_loss" and cfg.objective.direction == "minimize"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)
NESTED_BOMB = "a: &a {p: 1, q: 2.5}\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} {{x: *{chr(97 + i)}, y: *{chr(97 + i)}, z: *{chr(97 + i)}}}\n"
    for i in range(20)
)


@pytest.mark.parametrize(
    "config",
    [
        "lr: 0.1\n" + "#" * (init_lab.MAX_YAML + 10),  # too large: not read
        "{{{ not: yaml: [",
        "just a string",
        BOMB,
        NESTED_BOMB,
        "\x00\xff binary",
        "a:\n" + "  " * 1 + "[" * 5000 + "]" * 5000,
    ],
)
def test_here_survives_hostile_configs(tmp_path, config):
    lab = tmp_path / "proj"
    (lab / "conf").mkdir(parents=True)
    (lab / "train.py").write_text('@hydra.main(config_path="conf", config_name="config")\n')
    (lab / "conf" / "config.yaml").write_text(config, errors="surrogateescape")
    written, _notes = init_lab.init_here(lab, "loss", "minimize")
    assert written == ["nightlab.toml", "IDEA.md"]
    validate(lab)
    assert len(load_config(lab).search) <= init_lab.MAX_KNOBS


def test_here_ignores_a_config_path_outside_the_project(tmp_path):
    (tmp_path / "secret.yaml").write_text("lr: 0.5\n")
    lab = tmp_path / "proj"
    lab.mkdir()
    (lab / "train.py").write_text('@hydra.main(config_path="..", config_name="secret")\n')
    init_lab.init_here(lab, "loss", "minimize")
    assert load_config(lab).search == {}


def test_here_without_an_entry_point_refuses(tmp_path):
    (tmp_path / "util.py").write_text("x = 1\n")
    proc = cli("init", "--here", str(tmp_path), "--metric", "m", "--direction", "maximize",
               check=False)  # fmt: skip
    assert proc.returncode == 2 and "no entry point" in proc.stderr
    assert not (tmp_path / "nightlab.toml").exists()


def test_here_in_a_hydra_zen_project_has_an_example_knob(tmp_path):
    (tmp_path / "run.py").write_text("from hydra_zen import store, zen\nstore(x=1)\n")
    init_lab.init_here(tmp_path, "acc", "maximize")
    cfg = load_config(tmp_path)
    assert cfg.trial.command == "python run.py" and cfg.trial.params == "hydra"
    toml = tmp_path / "nightlab.toml"
    assert '# [search."optim.lr"]' in toml.read_text()
    # the example knob, uncommented but its optional default: the night reads the config's
    lines = toml.read_text().splitlines()
    toml.write_text("\n".join(
        line.removeprefix("# ") if line.startswith(("# [search", "# low", "# high", "# log"))
        else line for line in lines))  # fmt: skip
    assert load_config(tmp_path).search["optim.lr"].default is None
