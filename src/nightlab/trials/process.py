"""Processes nightlab starts: each in its own session (so its own process group, led by it),
watched against a deadline, and killed as a whole tree.

Every subprocess of a trial, of auto-repair (pip, git clone), of a smoke check or of a coding
agent starts here. `run` runs a command to its end (or its deadline) and returns what it
did; `spawn` starts one that a watcher follows (a local trial, see local.py), with the
helpers below to find, signal and reap its tree. A process is only ever signalled through
its process group while its leader is not reaped (so the group id cannot be reused), or
through psutil, which checks the create time (so never a reused pid).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import psutil

TICK_S = 0.1  # how often `run` calls its `tick` while the command runs
POLL_S = 0.05  # how often `run` looks at a command it has no pidfd for


@dataclass
class Finished:
    """A command `run` ran, and how it ended."""

    command: list[str]
    exit_code: int | None  # None: killed (`killed` says why); negative: ended by that signal
    seconds: float
    output: str = ""  # stdout (with stderr, unless asked apart); "" when it went to a log
    errors: str = ""  # stderr, when asked apart
    killed: str | None = None  # "deadline" (ran past its timeout) or "stopped" (tick said so)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Runner(Protocol):
    """What runs a command for code that must not spawn processes itself (a coding agent):
    `run` below, or a stand-in."""

    def __call__(
        self,
        command: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        log: Path | None = None,
        tick: Callable[[], bool] | None = None,
    ) -> Finished: ...


def run(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    log: Path | None = None,
    apart: bool = False,
    tick: Callable[[], bool] | None = None,
) -> Finished:
    """Run `command` in its own session until it ends, `timeout` seconds pass, or `tick`
    (called every TICK_S) returns False; then SIGKILL what is left of its tree: at the
    deadline or stop the whole tree, at its end whatever it left running in its group.

    Its output goes to `log` (overwritten) when given, else it is returned; with `apart`
    stderr is returned on its own (`errors`). Raises OSError when it cannot be started."""
    start = time.monotonic()
    deadline = start + timeout
    apart_file = tempfile.TemporaryFile() if apart else contextlib.nullcontext()
    with _sink(log) as out, apart_file as err:
        pid = spawn(command, cwd=cwd, env=env, stdout=out, stderr=err or subprocess.STDOUT)
        fd = pidfd(pid)
        killed = None
        try:
            while not exited(pid):
                now = time.monotonic()
                if now >= deadline:
                    killed = "deadline"
                elif tick is not None and not tick():
                    killed = "stopped"
                if killed:
                    signal_all(pid, tree(pid), signal.SIGKILL)
                    break
                wait = deadline - now if tick is None else min(deadline - now, TICK_S)
                if fd is None:
                    time.sleep(min(wait, POLL_S))
                else:
                    select.select([fd], [], [], wait)
        except BaseException:  # a tick that raised, a Ctrl-C: nothing of it outlives us
            signal_all(pid, tree(pid), signal.SIGKILL)
            reap(pid)
            raise
        else:
            signal_group(pid, signal.SIGKILL)  # what it left in its group (leader unreaped)
            code = reap(pid)
        finally:
            if fd is not None:
                os.close(fd)
        output = "" if log is not None else _read(out)
        errors = _read(err) if err is not None else ""
    seconds = time.monotonic() - start
    return Finished(command, None if killed else code, seconds, output, errors, killed)


def spawn(
    command: list[str],
    *,
    cwd: Path | str,
    env: dict[str, str],
    stdout: IO[Any] | int | None,
    stderr: IO[Any] | int | None,
) -> int:
    """Start `command` in a new session (it leads its own process group), stdin closed;
    its pid. The caller reaps it (`exited`, then `reap`): Popen never waits for it, so the
    pid and the group id stay the command's until then."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        start_new_session=True,
    )  # fmt: skip
    proc.returncode = 0  # Popen must not reap the child behind our back
    return proc.pid


def exited(pid: int) -> bool:
    """Our child `pid` has ended (it is not reaped: its pid and group id stay reserved)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def reap(pid: int) -> int:
    """Reap our ended (or ending) child `pid`: its exit status, -N for signal N."""
    # not the rusage's ru_maxrss: after fork it counts the parent's own pages
    _, status, _usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status)


def pidfd(pid: int) -> int | None:
    """A file descriptor that turns readable the moment `pid` ends (None: not available)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def create_time(pid: int) -> float | None:
    """When `pid` started: tells the process apart from a later one given the same pid."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tree(pid: int) -> list[psutil.Process]:
    """`pid` and all its descendants now (also those that left its process group)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def signal_all(pgid: int, procs: list[psutil.Process], sig: int) -> None:
    """Signal the process group `pgid` (none when 0) and each of `procs` (also those that
    left it)."""
    if pgid:
        signal_group(pgid, sig)
    for proc in procs:
        try:
            if proc.is_running():  # psutil checks the create time: never a reused pid
                proc.send_signal(sig)
        except psutil.Error:
            pass


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def sweep(var: str, value: str, since: float) -> list[int]:
    """SIGKILL processes left behind outside a process group (a daemon that called setsid):
    those started since `since` whose environment has `var` = `value`; their pids."""
    killed = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if (proc.info["create_time"] or 0) < since - 1:
                continue
            if proc.environ().get(var) == value:
                proc.kill()
                killed.append(proc.pid)
        except psutil.Error:
            pass
    return killed


def _sink(log: Path | None) -> IO[bytes]:
    return log.open("wb") if log is not None else tempfile.TemporaryFile()


def _read(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode("utf-8", errors="replace")
