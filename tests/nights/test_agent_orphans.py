"""No coding agent outlives its night: `stop`, `stop --now`, Ctrl-C, SIGTERM and a loop
crash end the agent's whole tree (a helper in its group and a daemon that left it), in the
sandbox and out of it, and its scratch folder goes; a loop killed outright leaves them to
the next start, which ends them first."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import psutil
import pytest

from nightlab import Lab
from nightlab.loop.slots import Slots

from conftest import cli, spawn_loop, status, wait_for

FAKE = Path(__file__).parents[1] / "agents" / "fake_agent.py"
MARK = "nightlab-fake-agent-"


def agent_lab(make_lab, sandbox: str) -> Path:
    lab = make_lab(max_trials=6, trial_extra=f'sandbox = "{sandbox}"')
    toml = lab / "nightlab.toml"
    argv = [sys.executable, str(FAKE), "{prompt_file}", "{decision_file}", "daemon"]
    argv_toml = ", ".join(f'"{a}"' for a in argv)
    toml.write_text(
        toml.read_text().replace('worker = "search"', 'worker = "command:fake"')
        + f"\n[agents.commands.fake]\nargv = [{argv_toml}]\ntimeout_s = 600\n"
    )
    return lab


def agents_left() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(MARK in part or part == str(FAKE) for part in proc.info["cmdline"] or []):
            out.append(proc)
    return out


def both_helpers_up() -> bool:
    names = " ".join(" ".join(p.cmdline()) for p in agents_left() if p.is_running())
    return f"{MARK}child" in names and f"{MARK}daemon" in names


def assert_all_gone(lab: Path) -> None:
    gone = wait_for(lambda: not agents_left() or None, timeout=10, what="no agent left")
    assert gone
    assert not list((lab / ".nightlab" / "agents").glob("*/work"))  # scratch folders gone


@pytest.fixture(autouse=True)
def no_strays():
    yield
    for proc in agents_left():  # a failed test must not leave them to the next one
        proc.kill()


@pytest.mark.parametrize(
    ("how", "sandbox"),
    [("stop", "bwrap"), ("stop --now", "none"), ("SIGINT", "bwrap"), ("SIGTERM", "none")],
)
def test_the_agent_ends_with_the_night(make_lab, how, sandbox):
    lab = agent_lab(make_lab, sandbox)
    loop = spawn_loop(lab)
    try:
        wait_for(both_helpers_up, timeout=60, what="the agent and its helpers")
        if how.startswith("stop"):
            cli("stop", str(lab), *how.split()[1:], "--wait", timeout=60)
        else:
            loop.send_signal(getattr(signal, how))
        assert loop.wait(timeout=60) == 0 or how == "SIGTERM"
    finally:
        if loop.poll() is None:
            loop.kill()
    assert_all_gone(lab)
    assert status(lab)["state"] == "stopped"


def test_a_loop_crash_ends_the_agent(make_lab, monkeypatch):
    lab = agent_lab(make_lab, "bwrap")
    wait = Slots.wait

    def crash_once_the_agent_thinks(self, *args, **kwargs):
        if both_helpers_up():
            raise RuntimeError("the loop broke")
        return wait(self, *args, **kwargs)

    monkeypatch.setattr(Slots, "wait", crash_once_the_agent_thinks)
    with pytest.raises(RuntimeError, match="the loop broke"):
        Lab(lab).run(report=lambda line: None)
    assert_all_gone(lab)
    assert status(lab)["state"] == "crashed"


def test_a_loop_killed_outright_leaves_its_agent_to_the_next_start(make_lab):
    lab = agent_lab(make_lab, "none")  # no sandbox to die with the loop
    loop = spawn_loop(lab)
    try:
        wait_for(both_helpers_up, timeout=60, what="the agent and its helpers")
        loop.send_signal(signal.SIGKILL)
        loop.wait(timeout=30)
    finally:
        if loop.poll() is None:
            loop.kill()
    old = agents_left()
    assert len(old) == 3  # the agent, its helper, its daemon: nothing could end them
    again = spawn_loop(lab)
    try:
        # they are ended at the start, before the new run's agent thinks
        wait_for(lambda: status(lab)["state"] == "running", timeout=60, what="the next run")
        wait_for(lambda: not any(p.is_running() for p in old), timeout=30, what="old agent gone")
        wait_for(both_helpers_up, timeout=60, what="the new run's agent")
        cli("stop", str(lab), "--now", "--wait", timeout=60)
        again.wait(timeout=60)
    finally:
        if again.poll() is None:
            again.kill()
    assert_all_gone(lab)
