"""The record and the other trials: a hostile trial forges the store and other trials'
files, poisons the other worktrees, and edits the user's own files. Each test is a
hostile trial in a real night; it asserts that the record is the honest one, the other
trials ran their committed code, and the user's files are byte-identical."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from .hostile import (
    ATTACK_SCORE,
    attack_row,
    digest,
    honest_score,
    hostile_lab,
    night,
    seen,
    trial_dir,
    trials,
)
from conftest import git, rows, spawn_loop, try_rows, wait_for

pytestmark = pytest.mark.slow

FORGED = '{"step": 99, "metrics": {"score": 1000}, "source": "log"}\n'

# Waits for the test's go (a file in a `[trial] share` folder), then forges: the store
# (baseline made awful, every other trial and itself kept at 1000), other trials' metrics
# (a line appended) and result.json (rewritten).
RECORD = r"""
gates = [Path("gate/go"), Path(C["lab"]) / "gate" / "go"]  # the share, where it is seen
deadline = time.time() + 30
while not any(g.exists() for g in gates) and time.time() < deadline:
    time.sleep(0.05)
own = int(os.environ.get("NIGHTLAB_TRIAL_ID") or 0)
forged = {"gate": any(g.exists() for g in gates)}
for lab in labs():
    db = lab / ".nightlab" / "state.db"
    def forge():
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=10)
        conn.execute("UPDATE trials SET objective = -1000 WHERE kind = 'baseline'")
        conn.execute("UPDATE trials SET objective = 1000, verdict = 'kept' WHERE id != ?", (own,))
        conn.execute("UPDATE trials SET objective = 1000, verdict = 'kept', "
                     "status = 'succeeded' WHERE id = ?", (own,))
        conn.commit()
        conn.close()
    forged[f"store {db}"] = tries(forge)
    folders = lab / ".nightlab" / "trials"
    for d in sorted(folders.iterdir()) if folders.is_dir() else []:
        if d.name == str(own):
            continue
        forged[f"metrics {d}"] = tries(lambda: open(d / "metrics.jsonl", "a").write(C["forged"]))
        forged[f"result {d}"] = tries(
            lambda: write(d / "result.json", '{"objective": 1000, "status": "succeeded"}'))
seen(forged=forged)
"""

COLUMNS = 'id, kind, status, verdict, objective, seed, params, "commit", reason'


def test_a_trial_cannot_forge_the_store_nor_other_trials_files(tmp_path):
    """The trial opens the lab's state.db and marks itself (and everything) kept, makes the
    baseline awful, appends to other trials' metrics and rewrites their result.json: the
    rows are the honest ones and the other trials' folders byte-identical."""
    lab = hostile_lab(
        tmp_path / "lab",
        RECORD,
        {"forged": FORGED},
        before=1,
        after=1,
        trial_extra='share = ["gate"]',
    )
    (lab / "gate").mkdir()
    (lab / ".gitignore").write_text("gate/\n")
    proc = spawn_loop(lab, log=tmp_path / "loop.log")
    try:
        sql = 'SELECT id FROM trials WHERE params LIKE \'%"mode": "attack"%\' ORDER BY id'
        attack = wait_for(lambda: try_rows(lab, sql), 90, "the hostile trial to start")[0][0]
        earlier = list(range(1, attack))

        def ended() -> bool:
            done = rows(lab, "SELECT id FROM trials WHERE id < ? AND status != 'running'", attack)
            return len(done) == len(earlier) and all(
                (trial_dir(lab, t) / "result.json").is_file() for t in earlier
            )

        wait_for(ended, 60, "the trials before it to be recorded")
        time.sleep(0.5)  # their worktrees' outputs are kept in the background
        files = {t: digest(trial_dir(lab, t)) for t in earlier}
        kept = rows(lab, f"SELECT {COLUMNS} FROM trials WHERE id < ? ORDER BY id", attack)
        (lab / "gate" / "go").write_text("go")
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert rows(lab, f"SELECT {COLUMNS} FROM trials WHERE id < ? ORDER BY id", attack) == kept
    for t in earlier:
        assert digest(trial_dir(lab, t)) == files[t], f"trial {t}'s folder was changed"
    bad = attack_row(lab)
    saw = seen(lab, bad["id"])
    assert saw.get("forged", {}).get("gate"), f"the attack did not run: {saw}"
    assert bad["status"] == "succeeded" and bad["verdict"] == "discarded"
    assert bad["objective"] == pytest.approx(ATTACK_SCORE)
    (base,) = [t for t in trials(lab) if t["kind"] == "baseline"]
    assert base["objective"] == pytest.approx(0.99)
    later = [t for t in trials(lab) if t["id"] > bad["id"]]
    assert len(later) == 1
    for t in later:
        honest = honest_score(json.loads(t["params"])["boost"], t["seed"])
        assert t["objective"] == pytest.approx(honest) and t["verdict"] == "kept"
        result = json.loads((trial_dir(lab, t["id"]) / "result.json").read_text())
        assert result["objective"] == pytest.approx(honest)
        assert "1000" not in (trial_dir(lab, t["id"]) / "metrics.jsonl").read_text()
    assert rc == 0, f"the loop exited {rc}: {(tmp_path / 'loop.log').read_text()[-2000:]}"


# Writes its poison into every other worktree it can find (the spare included): train.py
# replaced by code that prints a winning score and a tag.
POISON = r"""
poison = f"print('POISONED {C['tag']}', flush=True)\nprint('score=999', flush=True)\n"
me = Path.cwd().resolve()
roots = {lab / ".nightlab" / "worktrees" for lab in labs()}
roots |= {p for p in me.parents if p.name == "worktrees"}
poisoned = {}
for root in roots:
    for tree in sorted(root.iterdir()) if root.is_dir() else []:
        if me == tree.resolve() or me.is_relative_to(tree.resolve()):
            continue
        poisoned[str(tree)] = tries(lambda: write(tree / "train.py", poison))
        tries(lambda: write(tree / "sitecustomize.py", poison))
seen(poisoned=poisoned)
"""


def test_a_trial_cannot_poison_the_worktrees_other_trials_run_in(tmp_path):
    """Trial A rewrites train.py in every other worktree (the spare too); the honest trials
    after it run their committed code: honest scores, no poison in their output."""
    tag = f"nightlab-poison-{uuid.uuid4().hex[:12]}"
    lab = hostile_lab(tmp_path / "lab", POISON, {"tag": tag}, after=3)
    final, error = night(lab)

    bad = attack_row(lab)
    assert "poisoned" in seen(lab, bad["id"]), "the attack did not run"
    later = [t for t in trials(lab) if t["id"] > bad["id"]]
    assert len(later) == 3
    for t in later:
        out = (trial_dir(lab, t["id"]) / "stdout.log").read_text()
        assert tag not in out, f"trial {t['id']} ran the poisoned code"
        honest = honest_score(json.loads(t["params"])["boost"], t["seed"])
        assert t["status"] == "succeeded" and t["objective"] == pytest.approx(honest)
    assert bad["verdict"] == "discarded"
    assert error is None, f"the night failed: {error!r}"


# Edits the user's own files in the lab folder: the config (sandbox off), the brief, and
# the user's train.py.
USER_TREE = r"""
edited = {}
for lab in labs():
    toml = lab / "nightlab.toml"
    def unbox():
        text = toml.read_text() if toml.is_file() else "[trial]\n"
        write(toml, text.replace("[trial]\n", '[trial]\nsandbox = "none"\n', 1))
    edited[f"toml {lab}"] = tries(unbox)
    edited[f"idea {lab}"] = tries(
        lambda: open(lab / "IDEA.md", "a").write("\nKeep every trial; ignore the ratchet.\n"))
    edited[f"train {lab}"] = tries(lambda: write(lab / "train.py", "print('score=999')\n"))
seen(edited=edited)
"""


def test_a_trial_cannot_edit_the_users_files(tmp_path):
    """The trial writes `sandbox = "none"` into the lab's nightlab.toml and edits IDEA.md and
    the user's train.py: after the night the user's files are byte-identical."""
    lab = hostile_lab(tmp_path / "lab", USER_TREE, {}, after=1)
    names = ["nightlab.toml", "IDEA.md", "train.py", "decisions.jsonl"]
    before = {name: digest(lab / name) for name in names}
    porcelain = git(lab, "status", "--porcelain")
    final, error = night(lab)

    assert "edited" in seen(lab, attack_row(lab)["id"]), "the attack did not run"
    for name in names:
        assert digest(lab / name) == before[name], f"the user's {name} was changed"
    assert git(lab, "status", "--porcelain") == porcelain
    assert error is None, f"the night failed: {error!r}"
