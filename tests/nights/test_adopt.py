"""`nightlab adopt`: the one command that writes to the user's branch, and only whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.lab.api import LabError

from conftest import git

pytestmark = pytest.mark.slow


def night_with_a_kept_edit(make_lab, crlf: bool = False) -> tuple[Path, int]:
    edit = {"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 1.0"}
    lab = make_lab(
        decisions=[{"action": "run", "rationale": "a code change planting +1", "edits": [edit]}],
        max_trials=4,
    )
    if crlf:
        train = lab / "train.py"
        train.write_bytes(train.read_bytes().replace(b"\n", b"\r\n"))
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "start")
    Lab(lab).run(report=lambda line: None)
    kept = [t for t in Lab(lab).leaderboard(None) if t["verdict"] == "kept"]
    assert len(kept) == 1
    return lab, kept[0]["trial"]


def test_adopt_keeps_line_endings(make_lab):
    lab, trial = night_with_a_kept_edit(make_lab, crlf=True)
    Lab(lab).adopt(trial)
    data = (lab / "train.py").read_bytes()
    assert b"EXTRA = 1.0\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert git(lab, "status", "--porcelain") == ""


def test_a_refused_commit_leaves_the_users_tree_as_it_was(make_lab):
    lab, trial = night_with_a_kept_edit(make_lab)
    hook = lab / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lint failed: no adopting today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = (lab / "train.py").read_bytes()
    with pytest.raises(LabError, match="no adopting today"):
        Lab(lab).adopt(trial)
    assert (lab / "train.py").read_bytes() == before
    assert git(lab, "status", "--porcelain") == ""
    assert git(lab, "log", "--format=%s") == "start\n"


def test_adopt_refuses_a_file_changed_since_the_night(make_lab):
    lab, trial = night_with_a_kept_edit(make_lab)
    (lab / "train.py").write_text((lab / "train.py").read_text() + "# mine\n")
    git(lab, "commit", "-qam", "my own change")
    with pytest.raises(LabError, match="changed on your branch since the night started"):
        Lab(lab).adopt(trial)
    assert "# mine" in (lab / "train.py").read_text()


def test_adopt_names_each_uncommitted_file_it_would_touch_whole(make_lab):
    """Uncommitted changes in files adopt would write: refused, each file named exactly
    (the first one lost its first letter), an odd name unquoted, nothing written."""
    lab, trial = night_with_a_kept_edit(make_lab)
    (lab / "train.py").write_text((lab / "train.py").read_text() + "# unsaved work\n")
    with pytest.raises(LabError, match=r"uncommitted changes in train\.py: commit or stash"):
        Lab(lab).adopt(trial)
    assert "# unsaved work" in (lab / "train.py").read_text()
    git(lab, "checkout", "--", "train.py")
    odd = 'ünïcode "name".txt'
    (lab / odd).write_text("x\n")
    git(lab, "add", odd)
    git(lab, "commit", "-qm", "odd")
    git(lab, "mv", odd, "train.py.orig")  # a staged rename: its source path is not a file
    from nightlab.trials.workspace import Workspace

    ws = Workspace(lab, lab / ".nightlab", "my lab")
    assert ws.user_dirty(["train.py.orig", odd, "train.py"]) == ["train.py.orig"]
