"""Attacks by a coding agent on the worker that runs it (agents/command.py): a helper that
outlives it, a decision file too big to read."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_command import CONTEXT, worker

from nightlab.agents.command import CommandAgentError

MARK = "nightlab-attack-escapee"
DECISION = {"action": "wait", "rationale": "nothing to change before the next trial ends"}

# A daemon that leaves the agent's session (setsid, double fork) and drops the marker from
# its environment (env -u): neither the group kill nor process.sweep finds it.
ESCAPE = f"""
import json, os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("env", ["env", "-u", "NIGHTLAB_AGENT_LAB", sys.executable, "-c",
                          "import time; time.sleep(60)", {MARK!r}])
    os._exit(0)
os.wait()
open(sys.argv[2], "w").write(json.dumps({DECISION!r}))
"""

BIG = f"""
import json, sys
text = json.dumps({DECISION!r})
open(sys.argv[2], "w").write(text[:-1] + ', "notes_update": "' + "x" * 30_000_000 + '"}}')
"""


def agent(make_lab, tmp_path: Path, code: str, sandbox: str) -> Path:
    script = tmp_path / "agent.py"
    script.write_text(code)
    lab = make_lab(trial_extra=f'sandbox = "{sandbox}"')
    argv = [sys.executable, str(script), "{prompt_file}", "{decision_file}"]
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace('worker = "search"', 'worker = "command:evil"')
        + f"\n[agents.commands.evil]\nargv = {json.dumps(argv)}\ntimeout_s = 60\n"
    )
    return lab


def escapees() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        if MARK in (proc.info["cmdline"] or []):
            out.append(proc)
    return out


@pytest.fixture(autouse=True)
def no_strays():
    yield
    for proc in escapees():
        proc.kill()


def bwrap_works() -> bool:
    import shutil
    import subprocess

    if not shutil.which("bwrap"):
        return False
    probe = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param(
            "bwrap",
            marks=pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here"),
        ),
        pytest.param(
            "none",
            marks=pytest.mark.xfail(
                strict=True,
                reason='sandbox = "none": the agent\'s tree is found by its process group '
                "and by the NIGHTLAB_AGENT_LAB marker in /proc/PID/environ; a daemon "
                "that calls setsid and execs through `env -u` has neither and outlives the "
                "night; fix (command.py/process.py): make the loop a child subreaper "
                "(prctl PR_SET_CHILD_SUBREAPER) and kill every descendant it inherits, or run "
                "the agent in its own cgroup (systemd-run --user --scope) and kill the cgroup",
            ),
        ),
    ],
)
def test_a_daemon_that_drops_the_marker_ends_with_the_agent(make_lab, tmp_path, sandbox):
    lab = agent(make_lab, tmp_path, ESCAPE, sandbox)
    w = worker(lab, "evil")
    assert w.decide(CONTEXT).action == "wait"
    time.sleep(0.5)
    assert not escapees(), "a helper of the agent outlived it"


def test_a_huge_decision_file_is_neither_read_whole_nor_copied(make_lab, tmp_path):
    lab = agent(make_lab, tmp_path, BIG, "none")
    w = worker(lab, "evil")
    with pytest.raises(CommandAgentError, match="characters"):
        w.decide(CONTEXT)
    copies = list((lab / ".nightlab" / "agents").glob("*/decision.json"))
    assert copies and all(c.stat().st_size <= 2_000_000 for c in copies)
