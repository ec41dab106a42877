"""Protected files (`[trial] protected`, e.g. the evaluation script and the data splits):
hashed when a night begins; a decision that edits one is refused, and a trial that changes
one is recorded as failed with reason `harness_changed` (its worktree is reset afterwards,
which restores the files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nightlab.config import matches
from nightlab.store.files import read_regular
from nightlab.trials.workspace import Workspace

REASON = "harness_changed"


def fingerprint(ws: Workspace, commit: str, patterns: list[str]) -> dict[str, str]:
    """sha256 of every protected file of the code at `commit`, by lab-relative path."""
    if not patterns:
        return {}
    return {
        path: hashlib.sha256(ws.blob(commit, path)).hexdigest()
        for path in ws.files(commit)
        if matches(path, patterns)
    }


def edited(files: list[str], patterns: list[str]) -> list[str]:
    """The protected ones among the files a decision edits."""
    return [f for f in files if patterns and matches(f, patterns)]


def changed(root: Path, hashes: dict[str, str]) -> list[str]:
    """Protected files under `root` (a trial's working folder) that differ from `hashes`."""
    out = []
    for path, digest in sorted(hashes.items()):
        file = root / path
        same = os.path.realpath(file) == os.path.abspath(file)  # no link on the way either
        data = read_regular(file) if same else None
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            out.append(path)  # changed, deleted, or no longer a plain file of the tree
    return out

