"""The `local` executor: each trial is a shell command in its own process group, watched
for budget, silence (hang) and a diverging objective, and killed as a whole tree."""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from nightlab.config import Config
from nightlab.store import files, paths
from nightlab.store.kinds import INTERRUPTED
from nightlab.trials import process
from nightlab.trials.metrics import MetricReader
from nightlab.trials.watch import Handle, Outcome, TrialSpec

KIND = "local"
KILL_GRACE_S = 3.0
RSS_SAMPLE_S = 0.5
POLL_EVERY_S = 0.01  # wait_any's sleep for a trial without a pidfd (an old kernel)

# The trial's own exit status lands in a file, so a loop that died and came back can still
# tell how a trial it did not witness ended. A sealed evaluation runs after a training that
# exited 0, from its own folder; its status lands in a file of its own.
_WRAPPER = """echo $$ > "$NIGHTLAB_TRIAL_DIR/pid"
(
{command}
)
rc=$?
{evaluate}printf %s "$rc" > "$NIGHTLAB_TRIAL_DIR/exit_code"
exit $rc
"""
_EVALUATE = """if [ $rc -eq 0 ]; then
  if [ -L {artifacts} ] || [ ! -d {artifacts} ]; then  # a link would bind another folder
    echo "nightlab: the trial replaced its artifacts folder; nothing was evaluated" > \\
      "$NIGHTLAB_TRIAL_DIR/{log}"
    printf 125 > "$NIGHTLAB_TRIAL_DIR/{code}"
  else  # links inside would lead the evaluation to the labels: only files and folders
    find {artifacts} -mindepth 1 ! -type f ! -type d -delete
    (cd {folder} && NIGHTLAB_METRICS={metrics} {command}) > "$NIGHTLAB_TRIAL_DIR/{log}" 2>&1
    printf %s "$?" > "$NIGHTLAB_TRIAL_DIR/{code}"
  fi
fi
"""


class LocalExecutor:
    """`[executor] kind = "local"`: `slots` trials at once on this machine, sharing its GPUs;
    implements executor.Executor."""

    kind = KIND
    local_gpus = True

    def __init__(self, cfg: Config) -> None:
        self.slots = cfg.executor.slots

    def start(self, spec: TrialSpec) -> RunningTrial:
        return start(spec)

    def attach(self, spec: TrialSpec, handle: Handle, started_at: float) -> RunningTrial | None:
        if handle.pid is None:
            return None
        return attach(spec, handle.pid, handle.pid_started_at, started_at)


class RunningTrial:
    """A trial process this loop watches (started here, or re-attached after a crash);
    implements executor.Trial."""

    poll_every = POLL_EVERY_S

    def __init__(self, spec: TrialSpec, pid: int, started_at: float, own: bool) -> None:
        self.spec = spec
        self.pid = pid  # the wrapper shell: it leads its own session and process group
        self.started_at = started_at
        self.own = own  # our child (reaped with wait4) or an orphan from a dead loop
        self.created = process.create_time(pid)  # identifies the process beyond its pid
        self.reader = reader_for(spec)
        self.pidfd = process.pidfd(pid)  # readable the moment the process ends (wait_any)
        self.events: list[dict[str, Any]] = []  # none so far: a local trial reports nothing
        self.last_output = time.time()
        self.peak_rss_kb = 0
        self._next_rss = 0.0
        self._kill: tuple[str, str] | None = None  # (status, reason)
        self._kill_by: float | None = None  # SIGKILL what is left at this time
        self._doomed: list[psutil.Process] = []
        self._seen: list[psutil.Process] = []  # every descendant sampled: setsid ones too

    @property
    def handle(self) -> Handle:
        return Handle(kind=KIND, pid=self.pid, pid_started_at=self.created)

    def fileno(self) -> int | None:
        return self.pidfd

    def poll(self, now: float | None = None) -> Outcome | None:
        """Check the process once; an Outcome when it has ended (and is reaped)."""
        now = now or time.time()
        code = self._reap()
        if code is None:
            new = self.reader.read()
            if self.reader.grew:
                self.last_output = now
            self._sample_rss(now)
            self._check_limits(now, new)
            if self._kill_by is not None and now >= self._kill_by:
                self._kill_by = None
                process.signal_all(self.pid, self._doomed, signal.SIGKILL)
            return None
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.reader.read(final=True)
        code = code if isinstance(code, int) else _read_exit_code(self.spec.trial_dir)
        peak = self.peak_rss_kb / 1024 if self.peak_rss_kb else None
        return conclude(self.spec, self.reader, code, self._kill, now - self.started_at, peak)

    def _reap(self) -> int | None | str:
        """Exit status if ended; 'gone' for an orphan that ended; None while alive."""
        if self.own:
            if not process.exited(self.pid):
                return None
            if (
                self._kill_by is not None
                and time.time() < self._kill_by
                and any(process.alive(p) for p in self._doomed if p.pid != self.pid)
            ):
                return None  # killed: the command still has its grace period to save state
            # The leader is a zombie, so its pid and group id cannot be reused yet: kill what
            # the trial left running in its group (and descendants that left it), then reap.
            leftover = [p for p in self._seen if p.pid != self.pid]
            process.signal_all(self.pid, leftover, signal.SIGKILL)
            threading.Thread(  # daemons it started between samples: off the loop's path
                target=sweep, args=(self.spec.trial_dir, self.started_at), daemon=True
            ).start()
            return process.reap(self.pid)  # (its peak memory is the sampler's, not rusage's)
        if process.create_time(self.pid) == self.created and self.created is not None:
            try:
                if psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE:
                    return None
            except psutil.Error:
                pass
        process.signal_group(self.pid, signal.SIGKILL)
        return "gone"

    def _sample_rss(self, now: float) -> None:
        if now < self._next_rss:
            return
        self._next_rss = now + RSS_SAMPLE_S
        rss = 0
        tree = process.tree(self.pid)
        known = {p.pid for p in tree}
        self._seen = [p for p in self._seen if p.pid not in known and process.alive(p)] + tree
        for proc in tree:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss_kb = max(self.peak_rss_kb, rss // 1024)
        limit = self.spec.max_rss_mb
        if limit and rss / 2**20 > limit:
            self.kill("killed", f"memory: {rss / 2**20:.0f} MB exceeded max_rss_mb={limit:g}")

    def _check_limits(self, now: float, new: list[dict]) -> None:
        if broken := limit_broken(self, now, new):
            self.kill(*broken)

    def kill(self, status: str, reason: str, grace: float = KILL_GRACE_S) -> None:
        """SIGTERM the whole tree now, SIGKILL what is left after `grace` (from poll)."""
        if self._kill is None:
            self._kill = (status, reason)
            self._doomed = process.tree(self.pid)
            if self.spec.sandbox:  # the box dies with its wrapper and bwrap: TERM only what
                for proc in _inside(self._doomed, self.pid):  # runs inside, for its grace
                    process.signal_all(0, [proc], signal.SIGTERM)
            else:
                process.signal_all(self.pid, self._doomed, signal.SIGTERM)
            self._kill_by = time.time() + grace


def _inside(procs: list[psutil.Process], leader: int) -> list[psutil.Process]:
    """The trial's own processes: not its wrapper shell, bubblewrap's supervisors, nor the
    shell bubblewrap started (when that one ends the whole box is killed at once)."""
    out = []
    for proc in procs:
        try:
            if proc.pid == leader or proc.name() == "bwrap":
                continue
            parent = proc.parent()
            if parent and parent.name() == "bwrap" and proc.cmdline()[:2] == ["/bin/sh", "-c"]:
                continue
            out.append(proc)
        except psutil.Error:
            pass
    return out


def limit_broken(trial: Any, now: float, new: list[dict]) -> tuple[str, str] | None:
    """(status, reason) when a watched trial must be killed: its objective diverged (only
    the new points are checked: histories grow long), its budget is spent, it hangs, or its
    output passed a [limits] limit (the reader then stops reading it)."""
    spec = trial.spec
    if trial.reader.flood:
        return "killed", trial.reader.flood
    bad = trial.reader.diverged(new)
    if bad is not None:
        return "killed", f"diverged: {spec.metric}={bad}"
    if now - trial.started_at > spec.budget_s:
        return "timeout", f"budget: exceeded budget_seconds={spec.budget_s:g}"
    if spec.hang_s and now - trial.last_output > spec.hang_s:
        return "killed", f"hang: no output for hang_seconds={spec.hang_s:g}"
    return None


def reader_for(spec: TrialSpec) -> MetricReader:
    """The reader of what a trial prints and logs (`nightlab.log` writes into its out/)."""
    return MetricReader(
        spec.trial_dir, spec.metric, metrics=f"{paths.OUT}/{paths.METRICS}", limits=spec.limits
    )


def evaluation(spec: TrialSpec) -> tuple[MetricReader, int | None]:
    """What the sealed evaluation reported, and its exit status (None: it never ran)."""
    reader = MetricReader(
        spec.trial_dir, spec.metric, logs=(paths.EVAL_LOG,),
        metrics=f"{paths.EVAL}/{paths.METRICS}", limits=spec.limits,
    )  # fmt: skip
    reader.read(final=True)
    return reader, _read_exit_code(spec.trial_dir, paths.EVAL_EXIT_CODE)


def conclude(
    spec: TrialSpec,
    reader: MetricReader,
    exit_code: int | None,
    kill: tuple[str, str] | None,
    wall_s: float,
    peak_rss_mb: float | None,
) -> Outcome:
    """How a trial ended, from its exit status, its metrics and why it was killed. With a
    sealed evaluation the objective and every recorded metric (the held-out test metric
    among them) are what the evaluation reported, never the trial: what the trial printed
    stays in its history only, as its own points (`source` stdout/log, the evaluation's
    `eval`)."""
    objective = reader.reduce(spec.reduce, spec.maximize)
    metrics, history = reader.last(), list(reader.history)
    evaluated, eval_code = None, None
    if kill is None and reader.flood:  # it flooded, then ended before a poll saw it
        kill = ("killed", reader.flood)
    if spec.evaluate:
        evaluated, eval_code = evaluation(spec)
        objective = evaluated.reduce(spec.reduce, spec.maximize)
        metrics = evaluated.last()  # the trial's own claims do not count, none of them
        if kill is None and evaluated.flood:
            kill = ("killed", evaluated.flood)
        history += [{**p, "source": "eval"} for p in evaluated.history]
    if kill:
        status, reason = kill
    elif exit_code is None:
        status = "killed"
        reason = f"{INTERRUPTED}: it ended while no loop watched it, leaving no exit status"
    elif exit_code != 0:
        status, reason = "failed", f"exit status {exit_code}"
    elif spec.evaluate and eval_code != 0:
        status = "failed"
        reason = f"evaluation ([trial] evaluate) exited with status {eval_code}"
    elif objective is None:
        status = "failed"
        reason = (
            f"the evaluation ([trial] evaluate) never reported {spec.metric!r}"
            if spec.evaluate
            else f"exited 0 but never reported {spec.metric!r}: print "
            f"`{spec.metric}=<value>` or call nightlab.log({spec.metric}=...)"
        )
    else:
        status, reason = "succeeded", None
    return Outcome(
        status=status,
        exit_code=exit_code,
        wall_s=round(wall_s, 3),
        peak_rss_mb=None if peak_rss_mb is None else round(peak_rss_mb, 1),
        objective=objective if status == "succeeded" else None,
        metrics=metrics,
        reason=reason,
        log_tail=None if status == "succeeded" else files.trial_logs_tail(spec.trial_dir),
        history=history,
    )


def from_files(spec: TrialSpec, started_at: float) -> Outcome:
    """The outcome of a trial that ended while no loop watched it, from its folder alone."""
    reader = reader_for(spec)
    reader.read(final=True)
    code_file = spec.trial_dir / "exit_code"
    ended = code_file.stat().st_mtime if code_file.is_file() else time.time()
    return conclude(
        spec, reader, _read_exit_code(spec.trial_dir), None, max(0.0, ended - started_at), None
    )


def start(spec: TrialSpec) -> RunningTrial:
    """Launch `spec.command` through a wrapper shell in a new session (own process group)."""
    spec.trial_dir.mkdir(parents=True, exist_ok=True)
    env = {**spec.env, "NIGHTLAB_TRIAL_DIR": str(spec.trial_dir)}
    with (
        open(spec.trial_dir / "stdout.log", "ab") as out,
        open(spec.trial_dir / "stderr.log", "ab") as err,
    ):
        pid = process.spawn(
            ["/bin/sh", "-c", sandboxed_wrapper(spec)], cwd=spec.workdir, env=env, stdout=out,
            stderr=err,
        )  # fmt: skip
    return RunningTrial(spec, pid, time.time(), own=True)


def sandboxed_wrapper(spec: TrialSpec) -> str:
    """The wrapper script around the trial's command, run inside the sandbox when there is
    one (the wrapper stays outside, so pid and exit_code are written whatever it does)."""
    evaluate = ""
    if spec.evaluate:
        folder = spec.trial_dir / paths.EVAL
        evaluate = _EVALUATE.format(
            folder=shlex.quote(str(folder)),
            metrics=shlex.quote(str(folder / paths.METRICS)),
            command=_boxed(spec.eval_sandbox, spec.evaluate),
            artifacts=shlex.quote(str(spec.trial_dir / paths.OUT / paths.ARTIFACTS)),
            log=paths.EVAL_LOG, code=paths.EVAL_EXIT_CODE,
        )  # fmt: skip
    return _WRAPPER.format(command=_boxed(spec.sandbox, spec.command), evaluate=evaluate)


def _boxed(prefix: list[str], command: str) -> str:
    """`command` inside the box; where the box cannot be built (a Slurm node without
    bubblewrap) it does not run at all, and says so."""
    if not prefix:
        return command
    missing = (
        'command -v bwrap >/dev/null 2>&1 || { echo "nightlab: bubblewrap is not installed '
        'on $(uname -n), so this trial cannot be sealed and did not run: install it there '
        '(apt-get install bubblewrap) or set [trial] sandbox = \\"none\\"" >&2; exit 126; }'
    )
    return f"{missing}\n" + shlex.join([*prefix, "/bin/sh", "-c", command])


def attach(
    spec: TrialSpec, pid: int, created: float | None, started_at: float
) -> RunningTrial | None:
    """Re-attach to a trial a dead loop left running; None when it is gone or the pid now
    belongs to another process (then it must never be signalled)."""
    try:
        proc = psutil.Process(pid)
        if created is not None:
            if abs(proc.create_time() - created) > 0.05:
                return None
        elif proc.environ().get("NIGHTLAB_TRIAL_DIR") != str(spec.trial_dir):
            return None  # known only from the pid file: it must carry this trial's folder
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return RunningTrial(spec, pid, started_at, own=False)


def sweep(trial_dir: Path, since: float) -> list[int]:
    """SIGKILL processes a trial left behind outside its process group (a daemon that
    called setsid): those started since `since` whose environment names `trial_dir`."""
    return process.sweep("NIGHTLAB_TRIAL_DIR", str(trial_dir), since)


def _read_exit_code(trial_dir: Path, name: str = paths.EXIT_CODE) -> int | None:
    try:
        return int((trial_dir / name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
