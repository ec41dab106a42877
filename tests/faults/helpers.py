"""Shared helpers of the fault tests: labs built anywhere (a tmpfs, a module-scoped folder),
read-only looks at the store, the processes a lab's trials left behind, loops we own.

The labs are the ones of `tests/conftest.py` (same TRIAL script, same nightlab.toml), with a
few more ways for a trial to misbehave (`FAULT_MODES`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from conftest import MISBEHAVE, NIGHTLAB, TOML, TRIAL

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


def build_lab(
    path: Path,
    *,
    decisions: list[dict] | None = None,
    max_trials: int = 6,
    budget: float = 60,
    sleep: float = 0.0,
    trial_extra: str = "",
    tracking: bool = False,
    toml_extra: str = "",
) -> Path:
    """conftest's `make_lab` at any path (a tmpfs, a module-scoped folder), with the trial
    script that knows FAULT_MODES (allowed as `mode` values of replayed decisions)."""
    lab = Path(path)
    lab.mkdir(parents=True)
    (lab / "train.py").write_text(FAULT_TRIAL)
    (lab / "IDEA.md").write_text("Maximise score.\n")
    worker = "search"
    knobs = ""
    if decisions is not None:
        (lab / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
        worker = "replay:decisions.jsonl"
        knobs = MISBEHAVE.format(sleep=sleep).replace(
            '"silent"]', '"silent", ' + ", ".join(f'"{m}"' for m in EXTRA_CHOICES) + "]"
        )
    text = TOML.format(
        budget=budget,
        sleep=sleep,
        max_trials=max_trials,
        worker=worker,
        tracking=str(tracking).lower(),
        trial_extra=trial_extra,
        knobs=knobs,
    )
    (lab / "nightlab.toml").write_text(text + toml_extra)
    subprocess.run(["git", "init", "-q"], cwd=lab, check=True)
    return lab


# ---------------------------------------------------------------------------------- store
def connect_ro(lab: Path) -> sqlite3.Connection:
    """A read-only connection (never creates the file, never writes)."""
    db = (Path(lab) / ".nightlab" / "state.db").resolve()
    return sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=30)


def rows(lab: Path, sql: str, *args: object) -> list[tuple]:
    conn = connect_ro(lab)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def dict_rows(lab: Path, sql: str, *args: object) -> list[dict]:
    conn = connect_ro(lab)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def try_rows(lab: Path, sql: str, *args: object) -> list[tuple] | None:
    """`rows`, or None while the store does not exist yet or its schema is being made."""
    if not (Path(lab) / ".nightlab" / "state.db").is_file():
        return None
    try:
        return rows(lab, sql, *args)
    except sqlite3.OperationalError:
        return None


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


def git(lab: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=lab, capture_output=True, text=True)


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


def spawn_loop(
    lab: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python -m nightlab run LAB ARGS` as our own child, in its own session (so that
    killing its group takes its git children too, never this test)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [*NIGHTLAB, "run", str(lab), *args],
            env={**os.environ, "NIGHTLAB_PLAIN": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log:
            out.close()


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


def wait_until(predicate, timeout: float, interval: float = 0.002, proc=None):
    """Poll until `predicate()` is truthy (returns it), `proc` exits or `timeout` passes
    (returns None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(interval)
    return None


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
