"""A plan made on an older best, carried onto the current one.

A slow worker plans while trials run; when one of them is kept meanwhile, the best moves
under the plan. Its edits were made against the best of the moment it started thinking (a
coding agent's whole-file edits hold that code entire), so committing them as they are on
the new best would silently undo the kept change. Instead the plan's change — what its
files became against the base it was planned on — is merged three ways onto the current
best, file by file (`git merge-file`, the base being the planned one: a cherry-pick): a
change of other lines merges, a change of the same lines is a conflict, and a change the
best already holds is nothing new.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nightlab.agents.gate import REGULAR
from nightlab.trials.workspace import SAFE, Workspace, WorkspaceError


@dataclass
class Carried:
    """The plan's files merged onto the current best, or why they could not be."""

    files: dict[str, str] = field(default_factory=dict)  # lab-relative path → merged text
    conflicts: list[str] = field(default_factory=list)  # files both sides changed alike
    contained: bool = False  # the best already holds every change: nothing new

    @property
    def clean(self) -> bool:
        return not self.conflicts and not self.contained


def carry(ws: Workspace, planned: str, onto: str, files: dict[str, str]) -> Carried:
    """Merge `files` (new contents of lab-relative paths, made against commit `planned`)
    onto commit `onto`."""
    out = Carried()
    for rel, theirs in files.items():
        if not _regular(ws, onto, rel):  # a folder there, or a file where it needs one
            out.conflicts.append(rel)
            continue
        base, ours = _text(ws, planned, rel), _text(ws, onto, rel)
        if theirs == base:  # the plan left it alone: the best's stands
            continue
        if ours == base or ours == theirs:  # the best left it alone, or made the same change
            out.files[rel] = theirs
        elif base is None or ours is None:  # made on both sides, or gone from the best
            out.conflicts.append(rel)
        elif (merged := merge_text(ws.state, ours, base, theirs)) is None:
            out.conflicts.append(rel)
        else:
            out.files[rel] = merged
    if not out.conflicts:
        out.contained = all(_text(ws, onto, rel) == text for rel, text in out.files.items())
    return out


def merge_text(scratch: Path, ours: str, base: str, theirs: str) -> str | None:
    """`git merge-file` of three texts: the merge, or None when a hunk conflicts (git
    counts changes of adjacent lines as one: a conflict too)."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rebase-", dir=scratch) as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp, name)
            path.write_bytes(text.encode())
            paths.append(str(path))
        proc = subprocess.run(
            ["git", *SAFE, "merge-file", "-p", *paths], capture_output=True, cwd=tmp
        )
    if proc.returncode == 0:
        return proc.stdout.decode()
    if 0 < proc.returncode < 128:  # the number of conflicts
        return None
    raise WorkspaceError(f"git merge-file failed: {proc.stderr.decode(errors='replace').strip()}")


def _regular(ws: Workspace, commit: str, rel: str) -> bool:
    """Whether `rel` can be written as a regular file on `commit`: it is one or is absent,
    and every folder above it is a folder or absent (the best may have made a file of a
    folder the plan writes into, or a folder of a file the plan writes)."""
    if ws.mode(commit, rel) not in (None, *REGULAR):
        return False
    parts = rel.split("/")
    for n in range(1, len(parts)):
        above = ws.mode(commit, "/".join(parts[:n]))
        if above is None:
            return True
        if above != "040000":
            return False
    return True


def _text(ws: Workspace, commit: str, rel: str) -> str | None:
    return ws.read(commit, rel) if ws.exists(commit, rel) else None
