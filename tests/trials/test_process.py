"""trials/process.py: a command in its own session, watched against a deadline, killed as a
whole tree (what trials, auto-repair, smoke checks and coding agents all run through)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from nightlab.trials import process

ENV = dict(os.environ)


def sleeper(tag: str) -> str:
    """A shell word list for a process that sleeps 300 s and carries `tag` in its argv."""
    return f"{sys.executable} -c 'import time; time.sleep(300)' {tag}"


def left_behind(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if tag in " ".join(proc.info["cmdline"] or []) and process.alive(proc):
            found.append(proc)
    return found


def test_output_and_exit_status_come_back(tmp_path: Path):
    done = process.run(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, env=ENV,
                       timeout=30)  # fmt: skip
    assert done.exit_code == 3 and not done.ok and done.killed is None
    assert "out" in done.output and "err" in done.output  # stderr merged
    apart = process.run(["sh", "-c", "echo out; echo err >&2"], cwd=tmp_path, env=ENV,
                        timeout=30, apart=True)  # fmt: skip
    assert apart.ok and apart.output.strip() == "out" and apart.errors.strip() == "err"


def test_output_can_go_to_a_log(tmp_path: Path):
    log = tmp_path / "out.log"
    done = process.run(["sh", "-c", "echo logged"], cwd=tmp_path, env=ENV, timeout=30, log=log)
    assert done.ok and done.output == "" and log.read_text() == "logged\n"


def test_past_its_deadline_the_whole_tree_is_killed(tmp_path: Path):
    tag = f"nightlab-test-{uuid.uuid4().hex}"
    # a child in the group and a grandchild that left it (setsid): both must go
    script = f"{sleeper(tag)} & setsid {sleeper(tag)} & sleep 0.3; echo up; wait"
    started = time.monotonic()
    done = process.run(["sh", "-c", script, tag], cwd=tmp_path, env=ENV, timeout=1)
    assert done.exit_code is None and done.killed == "deadline" and "up" in done.output
    assert 1 <= time.monotonic() - started < 10
    time.sleep(0.2)
    assert not left_behind(tag)


def test_what_a_finished_command_left_in_its_group_is_killed(tmp_path: Path):
    tag = f"nightlab-test-{uuid.uuid4().hex}"
    script = f"({sleeper(tag)} &); sleep 0.3; exit 0"
    done = process.run(["sh", "-c", script], cwd=tmp_path, env=ENV, timeout=30)
    assert done.ok
    time.sleep(0.2)
    assert not left_behind(tag)


def test_tick_stops_a_command(tmp_path: Path):
    calls = []

    def tick() -> bool:
        calls.append(time.monotonic())
        return len(calls) < 3

    done = process.run(["sleep", "300"], cwd=tmp_path, env=ENV, timeout=60, tick=tick)
    assert done.exit_code is None and done.killed == "stopped" and len(calls) == 3


def test_a_command_that_cannot_start_raises(tmp_path: Path):
    with pytest.raises(OSError):
        process.run(["/no/such/program"], cwd=tmp_path, env=ENV, timeout=5)


def test_spawn_leaves_the_reaping_to_the_caller(tmp_path: Path):
    pid = process.spawn([sys.executable, "-c", "raise SystemExit(7)"], cwd=tmp_path, env=ENV,
                        stdout=None, stderr=None)  # fmt: skip
    assert os.getpgid(pid) == pid  # it leads its own process group
    fd = process.pidfd(pid)
    deadline = time.monotonic() + 30
    while not process.exited(pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert process.exited(pid)  # still not reaped: asking again is fine
    assert process.reap(pid) == 7
    if fd is not None:
        os.close(fd)


def test_when_the_watcher_raises_nothing_of_the_command_outlives_it(tmp_path: Path):
    """A tick that raises (the loop recording a trial while a smoke check runs, a Ctrl-C):
    the command's whole tree is killed before the error goes on."""
    tag = f"nightlab-test-{uuid.uuid4().hex}"
    script = f"{sleeper(tag)} & setsid {sleeper(tag)} & wait"
    calls = []

    def tick() -> bool:
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return True

    with pytest.raises(KeyboardInterrupt):
        process.run(["sh", "-c", script, tag], cwd=tmp_path, env=ENV, timeout=60, tick=tick)
    time.sleep(0.2)
    assert not left_behind(tag)
