"""The loop SIGKILLed at many random moments of one night, restarted each time until the
night ends: nothing lost, nothing done twice, nothing left running.

tests/nights/test_crash.py kills the loop at three chosen points (a trial running, a trial
dying with it); here the moments are random: while it starts (imports, the store, the
reconciliation of what the last loop left), while a trial runs, right after a trial was
created (before or while it is launched), right after a trial was recorded. Some kills take
the loop's whole process group (its git children too), as a reboot or the OOM killer's
cgroup kill would; trials run in their own sessions and survive the loop either way.

Replay the same schedule with NIGHTLAB_FAULT_SEED=<seed> (printed, and in every message).
NIGHTLAB_FAULT_KILLS sets the number of kills (default 22).

What "duplicated" means with replayed decisions: the replay position is the number of
decisions the store holds for the worker, so each line of the file must be recorded exactly
once, in file order, whatever the kills, and each accepted `run` among them must own exactly
one trial. `max_trials` is set far above what the file needs, so the night can only end by
the file running out (`the worker stopped the night: all N replayed`): a decision replayed
twice would show as a doubled row, a skipped one as a gap. The repeat of decision 3 is
refused by the twin check (the same code and parameters already ran) unless decision 3's
own trial was cut short by the loop's death (an `interrupted` trial may run again).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import (
    assert_rendered_files,
    assert_store_intact,
    assert_trials_recorded_once,
    fault_lab,
    lab_processes,
    reap,
    sigkill,
)

from conftest import git, rows, spawn_loop, try_rows, wait_until

pytestmark = pytest.mark.slow

SLEEPS = [0.05, 0.3, 0.1, 0.2]
# Bugs this night may run into, each pinned by an xfail test of test_kill_points.py; the
# night is restarted past them (and they are printed), so that all the rest is checked.
NO_FOLDER = "/.result.json."  # the temporary file result.json is written to, in no folder
STALE_LOCK = ".lock': File exists"
KNOWN_BUGS = {
    NO_FOLDER: "a trial row without its folder: the restart dies writing its result.json "
    "(test_a_kill_between_a_trial_row_and_its_folder)",
    STALE_LOCK: "git killed with the loop left a lock (nightlab's private index, a trial "
    "worktree's index): every restart dies on it until it is removed by hand "
    "(test_a_group_kill_while_git_holds_a_lock)",
}
EDIT_EVERY = 5


def night() -> list[dict]:
    """32 runs (every 5th edits train.py, some write notes and TODOs), the repeat of run 3
    right after it, and one wait."""
    out: list[dict] = []
    for i in range(1, 33):  # long enough for the kills wanted, whatever the seed
        d: dict = {
            "action": "run",
            "rationale": f"replayed decision {i}: push boost to {i / 10:.1f}",
            "params": {"boost": round(i / 10, 1), "sleep": SLEEPS[i % 4], "mode": "ok"},
        }
        if i % EDIT_EVERY == 0:
            d["edits"] = [
                {"file": "train.py", "search": "EXTRA = 0.0", "replace": f"EXTRA = 0.0  # e{i}"}
            ]
        if i % 3 == 0:
            d["notes_update"] = f"note written by replayed decision {i}"
        if i % 7 == 0:
            d["todo_new"] = [f"todo opened by replayed decision {i}"]
        out.append(d)
        if i == 3:
            out.append({**d, "rationale": "replayed repeat of decision 3: the very same run"})
            out[-1].pop("notes_update")
        if i == 12:
            out.append(
                {
                    "action": "wait",
                    "rationale": "replayed wait: let the noise estimate settle first",
                    "notes_update": "note written by the replayed wait",
                }
            )
    return out


def missing_results(lab: Path) -> dict[int, str]:
    """Trials the known bugs left without result.json: no folder at all (a kill between
    the trial's row and its folder), or a folder without it (a kill between the outcome's
    commit and result.json's rename: test_a_kill_after_a_trial_is_recorded_but_before_...)."""
    out = {}
    for (tid,) in rows(lab, "SELECT id FROM trials"):
        folder = lab / ".nightlab" / "trials" / str(tid)
        if not folder.is_dir():
            out[tid] = "no folder"
        elif not (folder / "result.json").exists():
            tmp = any(folder.glob(".result.json.*.tmp"))
            out[tid] = "its temporary file only" if tmp else "no result.json"
    return out


def observe(lab: Path, pid: int) -> str:
    """Where the loop `pid` was when it died, as the store tells."""
    if not try_rows(lab, "SELECT id FROM runs WHERE pid=?", pid):
        return "starting (no run row yet)"
    running = rows(lab, "SELECT pid, kind FROM trials WHERE status='running'")
    if any(p is None for p, _ in running):
        return "a trial created, not yet launched"
    if running:
        return "a baseline repeat running" if running[0][1] == "baseline" else "a trial running"
    return "between trials"


def test_sigkill_at_random_moments_of_a_night(tmp_path):
    seed = int(os.environ.get("NIGHTLAB_FAULT_SEED", random.randrange(2**32)))
    kills_wanted = int(os.environ.get("NIGHTLAB_FAULT_KILLS", "22"))
    print(f"NIGHTLAB_FAULT_SEED={seed}")
    rng = random.Random(seed)
    tag = f"[NIGHTLAB_FAULT_SEED={seed}]"
    decisions = night()
    lab = fault_lab(tmp_path / "lab", decisions=decisions, max_trials=60, sleep=0.1)
    logs = tmp_path / "loops"
    logs.mkdir()
    began = time.time()
    kills: list[tuple] = []
    died: list[str] = []  # the known bug each restart that died on its own died of
    locks: list[str] = []  # stale git locks removed by hand
    spawns = 0
    try:
        while True:
            high = try_rows(lab, "SELECT MAX(id) FROM trials")
            top = (high or [(0,)])[0][0] or 0
            done = try_rows(lab, "SELECT COUNT(*) FROM events WHERE kind='trial_finished'")
            finished = (done or [(0,)])[0][0]
            spawns += 1
            log = logs / f"{spawns:02d}.log"
            loop = spawn_loop(lab, log=log)
            if len(kills) >= kills_wanted:  # enough: let the night end
                code = loop.wait(timeout=120)
            else:  # the first start is not killed while it migrates: see test_kill_points
                code = kill_somewhere(lab, loop, top, finished, rng, kills, first=spawns == 1)
            if code is None:
                continue
            out = log.read_text(errors="replace")
            assert "Traceback" not in out, f"{tag} loop {spawns} crashed:\n{out[-4000:]}"
            if code == 0:
                break
            bug = next((b for b in KNOWN_BUGS if b in out), None)
            assert bug, f"{tag} restarted loop {spawns} died (exit {code}):\n{out[-3000:]}"
            died.append(bug)
            assert len(died) < 15, f"{tag} the loop keeps dying: {died}"
            if bug == STALE_LOCK:  # git's advice, what a user would do: remove the lock
                for stale in re.findall(r"Unable to create '([^']+\.lock)': File exists", out):
                    Path(stale).unlink(missing_ok=True)
                    locks.append(stale.removeprefix(str(lab) + "/"))
        elapsed = time.time() - began
        where = Counter(k[3] for k in kills)
        print(f"{tag} {len(kills)} kills ({sum(k[2] for k in kills)} of the process group), "
              f"{spawns} loops, {elapsed:.1f}s; where: {dict(where)}")  # fmt: skip
        for k in kills:
            print("  kill", k)
        for bug, n in Counter(died).items():
            print(f"{tag} {n} restart(s) died of a known bug: {KNOWN_BUGS[bug]}")
        if locks:
            print(f"{tag} stale git locks removed by hand: {sorted(set(locks))}")
        assert len(kills) >= 20, f"{tag} the night ended after {len(kills)} kills: lengthen it"
        check_night(lab, decisions, spawns, tag)
        ((total, cut),) = rows(
            lab, "SELECT COUNT(*), SUM(reason LIKE 'interrupted%') FROM trials"
        )  # fmt: skip
        print(f"{tag} {total} trials, {cut} of them cut short by a kill (interrupted)")
        leftovers = lab_processes(lab)
        assert leftovers == [], f"{tag} processes left behind: {leftovers}"
    finally:
        reap(lab_processes(lab))


def kill_somewhere(
    lab: Path, loop, top: int, finished: int, rng: random.Random, kills: list, first: bool
) -> int | None:
    """SIGKILL `loop` at a random moment; its exit code if it ended on its own first."""
    phase = rng.choices(
        ["startup", "trial running", "trial created", "trial recorded"], [2, 3, 2, 3]
    )[0]
    phase = "trial running" if first else phase
    group = rng.random() < 0.3
    if phase == "startup":
        delay = rng.uniform(0.05, 1.5)
        wait_until(lambda: False, delay, proc=loop)
    else:
        ready = {
            "trial running": lambda: try_rows(
                lab,
                "SELECT 1 FROM trials WHERE status='running' AND pid IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM runs WHERE pid=?)",
                loop.pid,
            ),
            "trial created": lambda: try_rows(lab, "SELECT 1 FROM trials WHERE id > ?", top),
            "trial recorded": lambda: try_rows(
                lab,
                "SELECT 1 FROM events WHERE kind='trial_finished' "
                "GROUP BY kind HAVING COUNT(*) > ?",
                finished,
            ),
        }[phase]
        wait_until(ready, 20, proc=loop)
        delay = rng.uniform(0, 0.25 if phase == "trial running" else 0.02)
        time.sleep(delay)
    if loop.poll() is not None:
        return loop.returncode
    sigkill(loop, group=group)
    if loop.returncode != -signal.SIGKILL:  # it had just ended on its own
        return loop.returncode
    kills.append((phase, round(delay, 3), group, observe(lab, loop.pid)))
    return None


def check_night(lab: Path, decisions: list[dict], spawns: int, tag: str) -> None:
    assert_store_intact(lab)
    lost = missing_results(lab)  # the known bugs: printed, and left out of the checks
    if lost:
        print(f"{tag} trials without result.json (known bugs): {lost}")
    ids = assert_trials_recorded_once(lab, without_result=set(lost))
    runs = rows(lab, "SELECT id, state, end_reason FROM runs ORDER BY id")
    assert 1 <= len(runs) <= spawns, tag
    assert [r[1] for r in runs] == ["crashed"] * (len(runs) - 1) + ["finished"], (tag, runs)
    assert runs[-1][2] == f"the worker stopped the night: all {len(decisions)} replayed", tag
    started = rows(lab, "SELECT run_id, COUNT(*) FROM events WHERE kind='run_started' GROUP BY 1")
    assert started == [(r[0], 1) for r in runs], tag
    # a SIGKILLed run is marked crashed by the next loop; only runs that ended themselves
    # (the last one, and those that died of a known bug, even if the kill came before the
    # process was gone) wrote run_ended
    killed = "the loop process died without a clean stop"
    alone = [r for r in runs[:-1] if r[2] != killed]
    assert all(any(b in r[2] for b in KNOWN_BUGS) for r in alone), (tag, alone)
    ended = rows(lab, "SELECT run_id FROM events WHERE kind='run_ended' ORDER BY run_id")
    assert ended == [(r[0],) for r in [*alone, runs[-1]]], tag

    trials = {
        r[0]: r
        for r in rows(
            lab,
            "SELECT id, kind, status, reason, seed, decision_id, [commit], base_commit "
            "FROM trials ORDER BY id",
        )
    }
    assert set(trials) == set(ids)
    interrupted = {
        t for t, r in trials.items() if r[2] == "killed" and (r[3] or "").startswith("interrupted")
    }
    for t, r in trials.items():  # nothing failed on its own: only the loop's death cut trials
        assert r[2] == "succeeded" or t in interrupted, (tag, r)
    # the baseline: exactly baseline_repeats succeeded repeats, each seed used once
    base = [r for r in trials.values() if r[1] == "baseline"]
    assert sum(r[2] == "succeeded" for r in base) == 3, (tag, base)
    assert len({r[4] for r in base}) == len(base), (tag, base)
    assert all(r[0] in interrupted for r in base if r[2] != "succeeded"), tag

    # the replayed decisions: each line of the file exactly once, in order, then stop(s)
    recorded = rows(
        lab,
        "SELECT id, action, accepted, reasons, body FROM decisions "
        "WHERE worker='replay:decisions.jsonl' ORDER BY id",
    )
    bodies = [json.loads(r[4]) for r in recorded]
    rationales = [b["rationale"] for b in bodies]
    expected = [d["rationale"] for d in decisions]
    assert rationales[: len(expected)] == expected, (tag, rationales)
    tail = rationales[len(expected) :]
    assert tail and set(tail) == {f"all {len(decisions)} replayed"}, (tag, tail)
    by_decision = Counter(r[5] for r in trials.values())
    repeat_of_3 = None
    for (did, action, accepted, reasons, _), d in zip(recorded, decisions, strict=False):
        reasons = json.loads(reasons)
        owned = by_decision.get(did, 0)
        assert action == d["action"], (tag, d["rationale"])
        if d["rationale"].startswith("replayed repeat of decision 3"):
            repeat_of_3 = (accepted, reasons, owned)
            continue
        assert accepted == 1 and reasons == [], (tag, d["rationale"], reasons)
        assert owned == (1 if d["action"] == "run" else 0), (tag, d["rationale"], owned)
        if owned:  # the trial ran what the decision said (every knob is given)
            (params,) = rows(lab, "SELECT params FROM trials WHERE decision_id=?", did)[0]
            assert json.loads(params) == d["params"], (tag, d["rationale"], params)
    # the repeat: refused as a twin, unless decision 3's trial was cut short by the loop
    (first,) = [t for t, r in trials.items() if r[5] == recorded[2][0]]
    accepted, reasons, owned = repeat_of_3
    if first in interrupted:
        assert accepted == 1 and owned == 1, (tag, reasons)
    else:
        assert accepted == 0 and owned == 0, tag
        assert reasons == [f"the same code and parameters as trial {first} already ran: "
                           "nothing new"], (tag, reasons)  # fmt: skip
    # housekeeping: each note and TODO of an accepted decision exactly once
    notes = [r[0] for r in rows(lab, "SELECT text FROM notes ORDER BY id")]
    wanted = [
        b["notes_update"] for (_, _, ok, _, _), b in zip(recorded, bodies, strict=True)
        if ok and b.get("notes_update")
    ]  # fmt: skip
    assert notes == wanted, tag
    todos = [r[0] for r in rows(lab, "SELECT text FROM todos ORDER BY id")]
    assert todos == [t for d in decisions for t in d.get("todo_new", [])], tag
    assert_rendered_files(lab)

    # git: every edit trial's code kept under its ref, the best branch exists, no corruption
    try:
        git(lab, "fsck", "--no-dangling")  # fails naming git's complaint
    except AssertionError as exc:
        raise AssertionError(f"{tag} {exc}") from None
    for t, r in trials.items():
        if r[6] != r[7] and t not in interrupted:
            ref = git(lab, "rev-parse", f"refs/nightlab/tiny/trials/{t}", check=False).strip()
            assert ref == r[6], (tag, t)
    assert git(lab, "rev-parse", "--verify", "nightlab/tiny/best", check=False).strip(), tag
