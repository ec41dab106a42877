"""Lab templates for `nightlab init`: `minimal` (pure Python), `digits` (PyTorch) and
`lightning-hydra` (the digits task with PyTorch Lightning + hydra-zen)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nightlab.lab.errors import LabError
from nightlab.trials.workspace import init_repo

from nightlab.store.paths import STATE_DIR

HERE = Path(__file__).parent
SKIP = shutil.ignore_patterns(STATE_DIR, "__pycache__", "*.pyc", "outputs")


def names() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if (p / "nightlab.toml").is_file())


def create(dest: Path, template: str) -> Path:
    """Copy `template` into the new folder `dest`, name the lab after the folder and make
    it a git repository with one commit ("nightlab init: TEMPLATE")."""
    from nightlab.lab.init_lab import commit, lab_name, set_name

    source = HERE / template
    if not (source / "nightlab.toml").is_file():
        raise LabError(f"unknown template {template!r}; choose one of {', '.join(names())}")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise LabError(
            f"{dest} exists and is not empty; choose a new folder, or run "
            "`nightlab init --here` there to add nightlab to an existing project"
        )
    shutil.copytree(source, dest, ignore=SKIP, dirs_exist_ok=True)
    gitignore = dest / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(f"{STATE_DIR}/\n__pycache__/\n")
    toml = dest / "nightlab.toml"
    toml.write_text(set_name(toml.read_text(), lab_name(dest)))
    init_repo(dest)
    commit(dest, f"nightlab init: {template}")
    return dest.resolve()
