"""Escapes through what the loop does after a trial: the git it runs in the trial's
worktree (a `.git` the trial replaced, with hooks and an fsmonitor), and the files it
moves, writes or reads where the trial left symlinks. Each test is a hostile trial in a
real night; it asserts that nothing outside the trial changed and the record is honest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .hostile import (
    ATTACK_SCORE,
    attack_row,
    digest,
    honest_score,
    hostile_lab,
    links_out_of,
    night,
    record_text,
    seen,
    trial_dir,
    trials,
)
from conftest import git

pytestmark = pytest.mark.slow

# The trial replaces its worktree's `.git` by a git dir of its own (variant "dir": a `.git`
# folder; "file": a `.git` file pointing at a git dir in its output folder, which outlives
# the worktree), borrowing the lab's objects so that the loop's `git checkout` of the next
# commit succeeds, with hooks and core.fsmonitor that write a marker outside the sandbox.
GIT_ESCAPE = r"""
hook = "#!/bin/sh\necho \"$0 $*\" >> " + C["marker"] + "\nexit 0\n"
dotgit = Path.cwd() / ".git"
objects = []  # the lab's objects: through the worktree's own gitdir, or the lab's .git
if dotgit.is_file():
    gd = Path(dotgit.read_text().split(":", 1)[1].strip())
    common = gd / "commondir"
    base = (gd / common.read_text().strip()).resolve() if common.is_file() else gd
    objects.append(base / "objects")
objects += [lab / ".git" / "objects" for lab in labs()]
objects = [o for o in objects if o.is_dir()]
head = tries(lambda: subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip())
if C["variant"] == "dir":
    evil = dotgit
else:
    evil = ARTIFACTS / "evil.git"
tries(lambda: subprocess.run(["rm", "-rf", str(dotgit)]))
(evil / "objects" / "info").mkdir(parents=True, exist_ok=True)
(evil / "refs" / "heads").mkdir(parents=True, exist_ok=True)
(evil / "hooks").mkdir(parents=True, exist_ok=True)
if objects:
    write(evil / "objects" / "info" / "alternates", "\n".join(map(str, objects)) + "\n")
write(evil / "HEAD", (head if len(head or "") == 40 else "ref: refs/heads/main") + "\n")
write(evil / "config",
      "[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
      f"\thooksPath = {evil / 'hooks'}\n\tfsmonitor = {evil / 'hooks' / 'fsmonitor'}\n"
      "\tuntrackedCache = false\n")
for name in ("post-checkout", "post-index-change", "reference-transaction", "pre-commit",
             "post-commit", "pre-auto-gc", "post-rewrite", "fsmonitor", "fsmonitor-watchman"):
    write(evil / "hooks" / name, hook, 0o755)
if C["variant"] == "file":
    write(dotgit, f"gitdir: {evil}\n")
# and the shared hooks of the lab's repository, if it can reach them
planted = {str(lab): tries(lambda: write(lab / ".git" / "hooks" / "post-checkout", hook, 0o755))
           for lab in labs()}
status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
seen(objects=[str(o) for o in objects], head=head, evil=str(evil), planted=planted,
     status=status.returncode, marker_in_box=Path(C["marker"]).exists())
"""


@pytest.mark.parametrize("variant", ["dir", "file"])
def test_a_git_dir_the_trial_planted_runs_no_hook_outside(tmp_path, variant):
    """A trial replaces its worktree's `.git` by a git dir with hooks and an fsmonitor:
    neither the loop's git after the trial nor the trials that reuse the tree run them."""
    marker = tmp_path / "outside" / "git-hook-ran"
    marker.parent.mkdir()
    lab = hostile_lab(
        tmp_path / "lab", GIT_ESCAPE, {"marker": str(marker), "variant": variant}, after=3
    )
    lab_git = {name: digest(lab / ".git" / name) for name in ("hooks", "config", "info")}
    final, error = night(lab)

    assert not marker.exists(), (
        f"a hook planted by the trial ran outside: {marker.read_text()[:200]}"
    )
    assert {name: digest(lab / ".git" / name) for name in lab_git} == lab_git
    bad = attack_row(lab)
    assert bad["status"] == "succeeded" and bad["objective"] == pytest.approx(ATTACK_SCORE)
    assert bad["verdict"] == "discarded"
    assert error is None, f"the night failed: {error!r}"
    # the trials after it (in the same worktrees) ran the lab's code, honestly
    later = [t for t in trials(lab) if t["id"] > bad["id"]]
    assert len(later) == 3
    for t in later:
        boost = json.loads(t["params"])["boost"]
        assert t["status"] == "succeeded", (t["status"], t["reason"], t["log_tail"])
        assert t["objective"] == pytest.approx(honest_score(boost, t["seed"]))
    assert final is not None and final["state"] == "finished"
    assert not marker.exists()


# Symlinks everywhere the loop will look after the trial: untracked links in the worktree
# (its outputs) to /etc/passwd, the lab's .git/hooks, another repository, a file outside;
# an executable `post-checkout` among its outputs (moved into .git/hooks through a linked
# `outputs`, it would run at the next checkout); and, in its output folders, the files the
# loop writes or reads (metrics, exit_code, result.json, outputs, logs) replaced by links.
SYMLINKS = r"""
hook = "#!/bin/sh\necho \"$0 $*\" >> " + C["marker"] + "\nexit 0\n"
made = {}
def link(src, target):
    src = Path(src)
    def do():
        if src.is_symlink() or src.is_file():
            src.unlink()
        src.symlink_to(target)
    made[str(src)] = tries(do)
hooks = [lab / ".git" / "hooks" for lab in labs()]
# in the worktree: untracked outputs that are links
link("passwd", "/etc/passwd")
link("hooks", hooks[0] if hooks else "/nonexistent")
link("other", C["other"])
link("victim.txt", C["victim"])
Path("nested").mkdir(exist_ok=True)
link("nested/data.txt", Path(C["other"]) / "data.txt")
write("post-checkout", hook, 0o755)
# in its output folders: what the loop writes or reads afterwards
for out in OUTDIRS:
    link(out / "outputs", hooks[0] if hooks else C["victim_dir"])
    link(out / "exit_code", C["victim"])
    link(out / "result.json", C["victim"])
    link(out / "diff.patch", C["victim"])
    link(out / "stderr.log", C["secret"])
tries(lambda: ARTIFACTS.mkdir(parents=True, exist_ok=True))
link(ARTIFACTS / "passwd", "/etc/passwd")
link(ARTIFACTS / "other", C["other"])
link(METRICS, C["secret"])  # NIGHTLAB_METRICS itself: a link to a file outside
seen(made=made, outdirs=[str(o) for o in OUTDIRS])
"""

SECRET = "nightlab-secret-" + "s" * 16


def test_symlinks_a_trial_leaves_move_write_and_leak_nothing_outside(tmp_path):
    """What a trial leaves as symlinks (in its worktree and its output folders) neither
    writes, moves nor reveals anything outside the trial; the record holds no link out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious\n")
    victim_dir = outside / "victim-dir"
    victim_dir.mkdir()
    secret = outside / "secret.jsonl"  # unreadable in the box; forges a score if read
    secret.write_text(f'{{"step": 0, "metrics": {{"score": 1000}}}}\nscore=1000 {SECRET}\n')
    secret.chmod(0o600)
    other = tmp_path / "other"  # another repository on the machine
    other.mkdir()
    (other / "data.txt").write_text("other repository's data\n")
    git(other, "init", "-q")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "theirs")
    marker = outside / "hook-ran"
    consts = {
        "victim": str(victim),
        "victim_dir": str(victim_dir),
        "secret": str(secret),
        "other": str(other),
        "marker": str(marker),
    }
    lab = hostile_lab(tmp_path / "lab", SYMLINKS, consts, after=2)
    before = {
        "outside": digest(outside),
        "other": digest(other),
        "passwd": digest(Path("/etc/passwd")),
        "lab .git": digest(lab / ".git"),
    }
    final, error = night(lab)

    bad = attack_row(lab)
    after = {
        "outside": digest(outside),
        "other": digest(other),
        "passwd": digest(Path("/etc/passwd")),
        "lab .git": {k: v for k, v in digest(lab / ".git").items() if k in before["lab .git"]},
    }
    for what in before:
        assert after[what] == before[what], f"{what} changed: the trial's links were followed"
    assert not marker.exists(), "a hook moved out of the trial's outputs ran"
    hooks = sorted(p.name for p in (lab / ".git" / "hooks").iterdir())
    assert "post-checkout" not in hooks
    assert links_out_of(trial_dir(lab, bad["id"])) == []
    leaked = SECRET.encode() in record_text(lab)
    assert not leaked, "a file outside the box was read into the record through a link"
    assert bad["objective"] in (None, pytest.approx(ATTACK_SCORE)) and bad["verdict"] != "kept"
    assert seen(lab, bad["id"]).get("made"), "the attack did not run"
    assert error is None, f"the night failed: {error!r}"
    assert final is not None and final["state"] == "finished"
    assert os.path.isfile(victim) and victim.read_text() == "precious\n"
