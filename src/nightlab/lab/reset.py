"""`nightlab reset`: start a lab afresh (its `.nightlab/` and nightlab's git refs removed)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from nightlab.lab.errors import LabError
from nightlab.store.paths import MLARTIFACTS, MLFLOW_DB, STATE_DIR

if TYPE_CHECKING:
    from nightlab.lab.api import Lab


def reset(lab: Lab, *, drop_tracking: bool = False) -> list[str]:
    """Remove `.nightlab/` and nightlab's git refs; the lab's own MLflow store (mlflow.db,
    mlartifacts/) is kept unless `drop_tracking` (a store elsewhere, `[tracking] mlflow_uri`
    or MLFLOW_TRACKING_URI, is never touched). Refused while the loop runs. Returns what
    was removed."""
    current = lab.status()
    if current["state"] == "running":
        raise LabError(f"{lab.name} is running (PID {current['pid']}); stop it first")
    removed: list[str] = []
    keep = set() if drop_tracking else {MLFLOW_DB, MLARTIFACTS}
    if lab.state.is_dir():
        for entry in lab.state.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(f"{STATE_DIR}/{entry.name}")
    if lab.state.parent.joinpath("nightlab.toml").is_file():
        from nightlab.trials.workspace import Workspace

        removed += Workspace(lab.path, lab.state, lab.name).drop_refs()
    return removed
