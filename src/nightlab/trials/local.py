"""The `local` executor: each trial is a shell command in its own process group, watched
for budget, silence (hang) and a diverging objective, and killed as a whole tree."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from nightlab.trials.metrics import MetricReader

KILL_GRACE_S = 3.0
INTERRUPTED = "interrupted"  # reasons of trials cut short by nightlab's own fate, not theirs
RSS_SAMPLE_S = 0.5
TAIL_LINES = 40

# The trial's own exit status lands in a file, so a loop that died and came back can still
# tell how a trial it did not witness ended.
_WRAPPER = """echo $$ > "$NIGHTLAB_TRIAL_DIR/pid"
(
{command}
)
rc=$?
printf %s "$rc" > "$NIGHTLAB_TRIAL_DIR/exit_code"
exit $rc
"""


@dataclass
class TrialSpec:
    trial_id: int
    command: str
    workdir: Path
    trial_dir: Path
    env: dict[str, str]
    budget_s: float
    hang_s: float | None
    metric: str
    reduce: str
    maximize: bool


@dataclass
class Outcome:
    status: str  # succeeded|failed|timeout|killed
    exit_code: int | None
    wall_s: float
    peak_rss_mb: float | None
    objective: float | None
    metrics: dict[str, float]
    reason: str | None
    log_tail: str | None
    history: list[dict] = field(default_factory=list)


class RunningTrial:
    """A trial process this loop watches (started here, or re-attached after a crash)."""

    def __init__(self, spec: TrialSpec, pid: int, started_at: float, own: bool) -> None:
        self.spec = spec
        self.pid = pid
        self.started_at = started_at
        self.own = own  # our child (reaped with wait4) or an orphan from a dead loop
        self.reader = MetricReader(spec.trial_dir, spec.metric)
        self.pidfd = _pidfd(pid)  # readable the moment the process ends (see wait_any)
        self.last_output = time.time()
        self.peak_rss_kb = 0
        self._next_rss = 0.0
        self._kill: tuple[str, str] | None = None  # (status, reason)

    @property
    def pgid(self) -> int:
        return self.pid  # the wrapper shell leads its own session and group

    def poll(self, now: float | None = None) -> Outcome | None:
        """Check the process once; an Outcome when it has ended (and is reaped)."""
        now = now or time.time()
        code = self._reap()
        if code is None:
            self.reader.read()
            if self.reader.grew:
                self.last_output = now
            self._sample_rss(now)
            self._check_limits(now)
            return None
        return self._finish(code, now)

    def _reap(self) -> int | None | str:
        """Exit status if ended; 'gone' for an orphan that vanished; None while alive."""
        if self.own:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            self.peak_rss_kb = max(self.peak_rss_kb, usage.ru_maxrss)
            return os.waitstatus_to_exitcode(status)
        try:
            proc = psutil.Process(self.pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            pass
        return "gone"

    def _sample_rss(self, now: float) -> None:
        if now < self._next_rss:
            return
        self._next_rss = now + RSS_SAMPLE_S
        rss = 0
        for proc in _tree(self.pid):
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss_kb = max(self.peak_rss_kb, rss // 1024)

    def _check_limits(self, now: float) -> None:
        spec = self.spec
        bad = self.reader.diverged()
        if bad is not None:
            self.kill("killed", f"diverged: {spec.metric}={bad}")
        elif now - self.started_at > spec.budget_s:
            self.kill("timeout", f"budget: exceeded budget_seconds={spec.budget_s:g}")
        elif spec.hang_s and now - self.last_output > spec.hang_s:
            self.kill("killed", f"hang: no output for hang_seconds={spec.hang_s:g}")

    def kill(self, status: str, reason: str) -> None:
        """Terminate the whole process tree (SIGTERM, then SIGKILL after a grace period)."""
        if self._kill is None:
            self._kill = (status, reason)
            kill_tree(self.pid)

    def _finish(self, code: int | str, now: float) -> Outcome:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        kill_tree(self.pid, grace=0)  # reap what the trial left behind in its group
        self.reader.read(final=True)
        spec = self.spec
        exit_code = code if isinstance(code, int) else _read_exit_code(spec.trial_dir)
        objective = self.reader.reduce(spec.reduce, spec.maximize)
        if self._kill:
            status, reason = self._kill
        elif exit_code is None:
            status = "killed"
            reason = f"{INTERRUPTED}: it ended while no loop watched it, leaving no exit status"
        elif exit_code != 0:
            status, reason = "failed", f"exit status {exit_code}"
        elif objective is None:
            status = "failed"
            reason = (
                f"exited 0 but never reported {spec.metric!r}: print `{spec.metric}=<value>` "
                f"or call nightlab.log({spec.metric}=...)"
            )
        else:
            status, reason = "succeeded", None
        return Outcome(
            status=status,
            exit_code=exit_code,
            wall_s=round(now - self.started_at, 3),
            peak_rss_mb=round(self.peak_rss_kb / 1024, 1) if self.peak_rss_kb else None,
            objective=objective if status == "succeeded" else None,
            metrics=self.reader.last(),
            reason=reason,
            log_tail=None if status == "succeeded" else log_tail(spec.trial_dir),
            history=self.reader.history,
        )


def start(spec: TrialSpec) -> RunningTrial:
    """Launch `spec.command` through a wrapper shell in a new session (own process group)."""
    spec.trial_dir.mkdir(parents=True, exist_ok=True)
    env = {**spec.env, "NIGHTLAB_TRIAL_DIR": str(spec.trial_dir)}
    with (
        open(spec.trial_dir / "stdout.log", "ab") as out,
        open(spec.trial_dir / "stderr.log", "ab") as err,
    ):
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _WRAPPER.format(command=spec.command)],
            cwd=spec.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    # Popen must not reap the child behind our back: we wait4() it to get its peak RSS.
    proc.returncode = 0
    return RunningTrial(spec, proc.pid, time.time(), own=True)


def wait_any(trials: list[RunningTrial], timeout: float) -> None:
    """Sleep until one of `trials` ends or `timeout` passes, whichever comes first."""
    fds = [t.pidfd for t in trials if t.pidfd is not None]
    if fds and len(fds) == len(trials):
        select.select(fds, [], [], timeout)
    else:
        time.sleep(min(timeout, 0.01))  # no pidfd (old kernel, vanished pid): poll


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def attach(spec: TrialSpec, pid: int, pid_started_at: float | None, started_at: float):
    """Re-attach to a trial a dead loop left running; None when it is gone or not ours."""
    try:
        proc = psutil.Process(pid)
        if pid_started_at and abs(proc.create_time() - pid_started_at) > 1.0:
            return None  # the pid was reused by an unrelated process
    except psutil.NoSuchProcess:
        return None
    return RunningTrial(spec, pid, started_at, own=False)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the group and every descendant (also those that left the group), then KILL."""
    procs = _tree(pid)
    _signal_group(pid, signal.SIGTERM if grace else signal.SIGKILL)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM if grace else signal.SIGKILL)
        except psutil.Error:
            pass
    if grace:
        # psutil.wait_procs would reap our own child and steal its exit status from wait4
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) for p in procs):
            time.sleep(0.05)
        _signal_group(pid, signal.SIGKILL)
        for proc in procs:
            try:
                if _alive(proc):
                    proc.kill()
            except psutil.Error:
                pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_exit_code(trial_dir: Path) -> int | None:
    try:
        return int((trial_dir / "exit_code").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def log_tail(trial_dir: Path, lines: int = TAIL_LINES) -> str:
    parts = []
    for name in ("stderr.log", "stdout.log"):
        path = trial_dir / name
        if path.is_file():
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - 16384))
                text = fh.read().decode("utf-8", errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- {name} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(parts)
