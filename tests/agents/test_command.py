"""`command:NAME` coding agents: a fake CLI edits a scratch copy of the code and writes its
decision file; nightlab turns that into a decision that passes the same gate as any other."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from nightlab import Lab
from nightlab.agents import AgentError, make_worker
from nightlab.agents.command import CommandAgentError, CommandWorker
from nightlab.agents.gate import check
from nightlab.agents.tools import LabView
from nightlab.config import load_config

from conftest import rows

FAKE = Path(__file__).with_name("fake_agent.py")
CODE = "EXTRA = 0.0\nprint('score=1')\n"


def with_agent(lab: Path, mode: str, timeout: float = 60) -> Path:
    toml = lab / "nightlab.toml"
    argv = [sys.executable, str(FAKE), "{prompt_file}", "{decision_file}", mode]
    toml.write_text(
        toml.read_text().replace('worker = "search"', 'worker = "command:fake"')
        + f"\n[agents.commands.fake]\nargv = {json.dumps(argv)}\ntimeout_s = {timeout}\n"
    )
    return lab


def view() -> LabView:
    """The base code as the loop would show it: train.py (editable) and IDEA.md."""
    files = {"train.py": CODE, "IDEA.md": "Maximise score.\n"}

    def export(dest: Path) -> None:
        dest.mkdir(parents=True)
        for name, text in files.items():
            (dest / name).write_text(text)

    return LabView(
        files=lambda: list(files), read=files.get, editable=["train.py"],
        leaderboard=lambda k: [], trial_file=lambda t, n: None, export=export,
    )  # fmt: skip


def worker(lab: Path, name: str = "fake") -> CommandWorker:
    w = make_worker(f"command:{name}", load_config(lab), lab)
    w.view = view()
    return w


VERSIONS = {"codex": "codex-cli 0.171.0", "claude": "2.1.332 (Claude Code)", "aider": "0.86.2"}
CONTEXT = {"objective": {"metric": "score", "direction": "maximize"}, "brief": "Max score."}


def test_a_coding_agent_night_keeps_its_edit(make_lab):
    lab = with_agent(make_lab(max_trials=4), "good")
    final = Lab(lab).run(report=lambda line: None)
    assert final["trials"]["total"] == 4
    trial, verdict, objective = rows(
        lab, "SELECT id, verdict, objective FROM trials WHERE kind='trial'"
    )[0]
    assert verdict == "kept" and objective == pytest.approx(2.0, abs=0.02)
    diff = (lab / ".nightlab" / "trials" / str(trial) / "diff.patch").read_text()
    assert "+EXTRA = 1.0" in diff and "pyc" not in diff
    (run,) = (lab / ".nightlab" / "agents").iterdir()
    prompt = (run / "prompt.md").read_text()
    assert "# Objective" in prompt and "Baseline" in prompt  # the same context an LLM reads
    assert (run / "changed.txt").read_text() == "train.py\n"
    assert not (run / "work").exists()  # the scratch copy is gone once collected
    assert "EXTRA = 0.0" in (lab / "train.py").read_text()  # the user's files untouched


def test_a_change_outside_editable_rejects_the_whole_decision(make_lab):
    lab = with_agent(make_lab(), "outside")
    decision = worker(lab).decide(CONTEXT)
    assert {e.file for e in decision.edits} == {"train.py", "IDEA.md"}
    gate = check(decision, load_config(lab), {"train.py": CODE}.get)
    assert not gate.accepted and not gate.files
    assert any("'IDEA.md' is not editable" in r for r in gate.reasons)
    stray = worker(with_agent(make_lab(name="stray"), "stray")).decide(CONTEXT)
    assert not check(stray, load_config(lab), {"train.py": CODE}.get).accepted


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("silent", "wrote no .nightlab-decision.json"),
        ("invalid", "not a valid decision"),
        ("delete", "it deleted train.py"),
        ("fail", "exited with status 1: .*refused the key"),
        ("fifo", "it made blocker.py something other than a file"),  # would block the loop
        ("linked", "wrote no .nightlab-decision.json"),  # a link to a host file: not read
    ],
)
def test_an_unusable_agent_answer_is_an_error_naming_why(make_lab, mode, message):
    lab = with_agent(make_lab(), mode)
    with pytest.raises(CommandAgentError, match=message):
        worker(lab).decide(CONTEXT)


def test_an_agent_past_its_timeout_is_killed_with_its_children(make_lab):
    lab = with_agent(make_lab(), "hang", timeout=1.5)
    started = time.monotonic()
    with pytest.raises(CommandAgentError, match="1.5 s timeout"):
        worker(lab).decide(CONTEXT)
    assert time.monotonic() - started < 10
    left = [p for p in psutil.process_iter(["cmdline"]) if "nightlab-fake-agent-child"
            in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    assert not left


def test_a_missing_or_unknown_agent_fails_at_start(make_lab):
    lab = make_lab()
    with pytest.raises(AgentError, match="no such coding agent; use one of.*aider.*claude"):
        make_worker("command:nope", load_config(lab), lab)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + '\n[agents.commands.x]\nargv = ["no-such-agent-cli"]\n')
    with pytest.raises(AgentError, match="'no-such-agent-cli', which is not on PATH"):
        make_worker("command:x", load_config(lab), lab)
    toml.write_text(toml.read_text().replace('["no-such-agent-cli"]', '["sh", "{promt}"]'))
    with pytest.raises(AgentError, match="unknown placeholder 'promt'"):
        make_worker("command:x", load_config(lab), lab)


def test_builtin_templates_hand_the_prompt_to_the_cli(make_lab, tmp_path, monkeypatch):
    """codex and claude get the prompt as an argument; aider a prompt file and the editable
    files. (Stand-ins record their argv next to the prompt, then fail.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("codex", "claude", "aider"):
        script = bin_dir / name
        script.write_text(  # its output: the run's output.log
            f'#!/bin/sh\n[ "$1" = --version ] && echo "{name} {VERSIONS[name]}" && exit 0\n'
            'printf "%s\\0" "$@"\nexit 3\n'
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    home = Path(tempfile.mkdtemp(prefix="nightlab-home-", dir="/var/tmp"))  # not the user's
    monkeypatch.setenv("HOME", str(home))
    lab = make_lab()
    seen = {}
    for name in ("codex", "claude", "aider"):
        w = worker(lab, name)
        with pytest.raises(CommandAgentError, match="exited with status 3"):
            w.decide(CONTEXT)
        newest = max((lab / ".nightlab" / "agents").iterdir(), key=lambda p: p.stat().st_mtime)
        seen[name] = (newest / "output.log").read_text().split("\0")[:-1]
    codex, claude = seen["codex"], seen["claude"]
    # codex's own sandbox is off inside nightlab's (it cannot start there)
    assert codex[:3] == ["exec", "--sandbox", "danger-full-access"] and codex[-2] == "--"
    assert "# Objective" in codex[-1] and claude[:1] == ["-p"] and claude[-2] == "--"
    assert "# How to answer" in claude[-1]
    shutil.rmtree(home)
    aider = seen["aider"]
    assert aider[aider.index("--message-file") + 1].endswith("prompt.md")
    assert aider[-1] == "train.py" and "IDEA.md" not in aider  # the editable files only
