"""What only the fault tests need: a lab whose trials misbehave in more ways (`fault_lab`,
`FAULT_MODES`), checks that a night's record is whole after the faults, the processes a
lab's trials left behind, SIGKILL, and root-only mounts.

The labs, rows, git and loops are the shared ones of tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from conftest import TRIAL, build_lab, rows

# More misbehaviour, spliced into conftest's TRIAL before its final `print(score=...)`.
# Note: conftest's `mode=orphan` child is `sleep 300 nightlab-test-orphan`, which GNU sleep
# rejects at once ("invalid time interval"): that child never lives. `leaver` and `escape`
# leave children that really do live, in the trial's process group and outside it.
FAULT_MODES = """
CHILD = [sys.executable, "-c", "import time; time.sleep(300)", "nightlab-fault-child", mode,
         os.environ["NIGHTLAB_LAB_DIR"]]
if mode == "leaver":  # a live child left in the trial's process group
    subprocess.Popen(CHILD)
if mode == "escape":  # a live child that left the group (its own session): a daemon
    subprocess.Popen(CHILD, start_new_session=True)
if mode == "chatty":  # keeps printing: only the budget stops it
    while True:
        print("tick", flush=True)
        time.sleep(0.1)
if mode == "stubborn":  # ignores SIGTERM, then goes silent: needs the SIGKILL
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    time.sleep(600)
if mode == "graceful":  # cleans up for 0.5 s on SIGTERM (a checkpoint), after a silence
    import signal
    def saving(*_):
        time.sleep(0.5)
        print("saved a checkpoint on SIGTERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, saving)
    time.sleep(600)
if mode == "alloc":  # ~300 MB, touched, held while it keeps talking
    hog = bytearray(b"x") * (300 << 20)
    for _ in range(10):
        print("tick", len(hog) >> 20, flush=True)
        time.sleep(0.15)
if mode == "bigstep":  # what nightlab.log(step=10**400, score=...) writes
    with open(os.environ["NIGHTLAB_METRICS"], "a") as fh:
        fh.write(json.dumps({"step": 10**400, "metrics": {"score": score}}) + "\\n")
"""
_LAST = 'print(f"score={score}", flush=True)\n'
assert TRIAL.endswith(_LAST)
FAULT_TRIAL = TRIAL[: -len(_LAST)] + FAULT_MODES + _LAST
EXTRA_CHOICES = ["leaver", "escape", "chatty", "stubborn", "graceful", "alloc", "bigstep"]
CHILD_MARK = "nightlab-fault-child"


def fault_lab(path: Path, **options: object) -> Path:
    """conftest's `build_lab` with the trial script that knows FAULT_MODES (allowed as
    `mode` values of replayed decisions)."""
    return build_lab(path, trial=FAULT_TRIAL, modes=EXTRA_CHOICES, **options)


# ---------------------------------------------------------------------------------- store
def integrity(lab: Path) -> list[tuple]:
    return rows(lab, "PRAGMA integrity_check")


def assert_store_intact(lab: Path) -> None:
    assert integrity(lab) == [("ok",)]
    assert rows(lab, "PRAGMA foreign_key_check") == []


def event_counts(lab: Path, kind: str) -> dict[int, int]:
    return dict(
        rows(
            lab,
            "SELECT trial_id, COUNT(*) FROM events WHERE kind=? AND trial_id IS NOT NULL "
            "GROUP BY trial_id",
            kind,
        )
    )


def assert_trials_recorded_once(lab: Path, without_result: set[int] = frozenset()) -> list[int]:
    """Every trial: contiguous ids, settled (not running) with a verdict, exactly one
    trial_created, trial_finished and ratchet event, at most one trial_started, its cycle
    closed with its storyline line, its decision in the same cycle, its result.json
    agreeing with the store (but for `without_result`). Returns the trial ids."""
    trials = rows(
        lab,
        "SELECT t.id, t.status, t.verdict, t.cycle_id, d.cycle_id, c.summary "
        "FROM trials t JOIN decisions d ON d.id = t.decision_id "
        "JOIN cycles c ON c.id = t.cycle_id ORDER BY t.id",
    )
    ids = [t[0] for t in trials]
    assert ids == list(range(1, len(ids) + 1)), f"trial ids not contiguous: {ids}"
    assert rows(lab, "SELECT COUNT(*) FROM trials") == [(len(ids),)], "a trial without decision"
    for tid, st, verdict, cycle, decision_cycle, summary in trials:
        assert st in ("succeeded", "failed", "timeout", "killed"), (tid, st)
        assert verdict in ("baseline", "kept", "discarded"), (tid, verdict)
        assert cycle == decision_cycle, tid
        assert summary and f"trial {tid} " in summary, (tid, summary)
        result = Path(lab) / ".nightlab" / "trials" / str(tid) / "result.json"
        if tid in without_result:
            continue  # a known bug the caller reports
        assert result.is_file(), f"trial {tid} has no result.json"
        assert json.loads(result.read_text())["status"] == st, tid
    every = dict.fromkeys(ids, 1)
    for kind in ("trial_created", "trial_finished", "ratchet"):
        assert event_counts(lab, kind) == every, kind
    started = event_counts(lab, "trial_started")
    assert set(started) <= set(ids) and all(n == 1 for n in started.values()), started
    # one decision per cycle, one cycle per decision
    assert rows(lab, "SELECT COUNT(*) FROM cycles") == rows(lab, "SELECT COUNT(*) FROM decisions")
    return ids


def assert_rendered_files(lab: Path) -> None:
    """storyline.md holds every closed cycle's line exactly once (and nothing else);
    workpad.md and shared_todo.md hold every note and TODO of the store exactly once."""
    art = Path(lab) / ".nightlab" / "artifacts"
    story = (art / "storyline.md").read_text()
    lines = [ln[2:] for ln in story.splitlines() if ln.startswith("- ")]
    summaries = [r[0] for r in rows(lab, "SELECT summary FROM cycles WHERE summary IS NOT NULL")]
    assert Counter(lines) == Counter(summaries)
    notes = rows(lab, "SELECT trace_id, text, section FROM notes WHERE section != 'mentor'")
    if notes:
        pad = (art / "workpad.md").read_text().splitlines()
        assert Counter(pad) >= Counter(f"- [{trace}] {text}" for trace, text, _ in notes)
        assert sum(ln.startswith("- [") for ln in pad) == len(notes)
    todos = rows(lab, "SELECT id, text FROM todos")
    if todos:
        todo = (art / "shared_todo.md").read_text()
        for tid, text in todos:
            assert todo.count(f"#{tid} ") == 1 and text in todo


# ------------------------------------------------------------------------------ processes
def lab_processes(lab: Path) -> list[psutil.Process]:
    """Live processes started for this lab's trials (their environment names the lab, or
    their command line carries CHILD_MARK and the lab's path)."""
    lab_s = str(Path(lab).resolve())
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = proc.info["cmdline"] or []
        try:
            env = proc.environ()
        except psutil.Error:
            env = {}
        if (CHILD_MARK in cmd and lab_s in cmd) or env.get("NIGHTLAB_LAB_DIR") == lab_s:
            found.append(proc)
    return found


def cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def reap(procs: list[psutil.Process]) -> None:
    """End processes our own tests caused (by pid, checked by psutil against reuse)."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def sigkill(proc: subprocess.Popen, group: bool = False) -> None:
    """SIGKILL the loop (and with `group`, its git children as well), then reap it."""
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# ------------------------------------------------------------------------------- privilege
def need_root_mounts(tmp: Path) -> None:
    """Skip (fail under CI=true) unless we are root and may mount a tmpfs here."""
    why = None
    if os.geteuid() != 0:
        why = "needs root: mounting a tmpfs / read-only bind mount (root ignores chmod)"
    else:
        probe = tmp / "mount-probe"
        probe.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True
        )
        if done.returncode != 0:
            why = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        else:
            subprocess.run(["umount", str(probe)], check=True)
        probe.rmdir()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def umount(path: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)
