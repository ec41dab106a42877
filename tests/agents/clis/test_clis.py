"""One night per real coding-agent CLI (codex, claude, aider), each talking to a scripted
local server in its own wire protocol (servers.py), in nightlab's default sandbox.

The server plays the same script for each: change `EXTRA = 0.0` to `EXTRA = 1.0` in
train.py (the score rises by 1) and write `.nightlab-decision.json`, through the CLI's own
edit tools; then the night must run that trial and keep it. The CLIs are the pinned
versions `make clis` installs in .tools/ (`make test` does it first); without one the test
is skipped, or fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.agents.command import DECISION_FILE, template
from nightlab.config import load_config

from .servers import Edit, Scripted, Write
from conftest import rows

pytestmark = [pytest.mark.slow, pytest.mark.clis]

TOOLS = Path(__file__).resolve().parents[3] / ".tools" / "bin"  # links made by `make clis`
DECISION = {
    "action": "run",
    "rationale": "EXTRA is 0.0 in train.py and adds straight to the score",
    "hypothesis": "score rises by about 1.0",
    "dimension": "model_arch",
}
STEPS = [Edit("train.py", "EXTRA = 0.0", "EXTRA = 1.0"), Write(DECISION_FILE, json.dumps(DECISION))]
KEY = "scripted-test-key"
NIGHT_S = 120  # a night whose agent keeps failing ends here, and the test says why

# codex 0.171 ignores OPENAI_BASE_URL: a model provider in $CODEX_HOME/config.toml. A model
# it knows (gpt-5.5) makes it offer its apply_patch tool; an unknown one gets shell only.
CODEX_CONFIG = """
model = "gpt-5.5"
model_provider = "scripted"

[model_providers.scripted]
name = "scripted"
base_url = "{url}/v1"
env_key = "SCRIPTED_API_KEY"
wire_api = "responses"
"""


def need(cli: str) -> None:
    """Skip without the CLI or bubblewrap; fail instead under CI=true."""
    missing = []
    if not os.access(TOOLS / cli, os.X_OK):
        missing.append(f"{cli} is not installed in {TOOLS} (make clis)")
    if shutil.which("bwrap") is None:
        missing.append("bubblewrap is not installed (apt-get install bubblewrap)")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(missing) + ": `make test` installs them")
        pytest.skip("; ".join(missing))


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh $HOME for the CLI's settings, outside /tmp (codex refuses to make its helper
    links under /tmp, and the sandbox's /tmp is its own), and the CLIs first on PATH."""
    path = Path(tempfile.mkdtemp(prefix="nightlab-clis-home-", dir="/var/tmp"))
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.setenv("PATH", f"{TOOLS}{os.pathsep}{os.environ['PATH']}")
    for var in ("CODEX_HOME", "CLAUDE_CONFIG_DIR", "OPENAI_BASE_URL", "OPENAI_API_BASE",
                "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def lab_for(make_lab, cli: str) -> Path:
    """The tiny lab with `command:CLI` as its worker: three baseline runs, then one
    coding-agent decision, in bubblewrap (the default sandbox)."""
    lab = make_lab(worker=f"command:{cli}", max_trials=4)
    assert load_config(lab).trial.sandbox == "bwrap"
    return lab


def night(lab: Path, cli: str, server: Scripted) -> Path:
    """Run the lab's night, then check what it must show: the prompt reached the model, the
    agent's edit ran as a trial and was kept."""
    said: list[str] = []
    Lab(lab).run(report=said.append, hours=NIGHT_S / 3600)  # a failing agent: tried again
    runs = sorted((lab / ".nightlab" / "agents").iterdir())
    log = (runs[-1] / "output.log").read_text(errors="replace")[-3000:] if runs else ""
    why = f"{cli}'s output:\n{log}\nthe night:\n" + "\n".join(said[-20:])
    calls = server.model_calls()
    assert not server.problems, f"the script could not be played: {server.problems}; {why}"
    assert calls, f"{cli} never called the model; {why}"
    assert any("# How to answer" in c.text() and DECISION_FILE in c.text() for c in calls), (
        f"nightlab's prompt did not reach the model; {why}"
    )
    trials = rows(lab, "SELECT id, verdict, objective, hypothesis FROM trials WHERE kind='trial'")
    assert len(trials) == 1 and len(runs) == 1, why
    tid, verdict, objective, hypothesis = trials[0]
    assert verdict == "kept" and objective == pytest.approx(2.0, abs=0.02), why
    assert hypothesis == DECISION["hypothesis"]
    diff = (lab / ".nightlab" / "trials" / str(tid) / "diff.patch").read_text()
    assert "+EXTRA = 1.0" in diff
    assert "# Objective" in (runs[0] / "prompt.md").read_text()
    assert (runs[0] / "changed.txt").read_text() == "train.py\n"
    assert not (runs[0] / "settings").exists()  # the copy of its settings (a login) is gone
    decided = json.loads((runs[0] / "decision.json").read_text())
    assert decided["rationale"] == DECISION["rationale"]
    assert "EXTRA = 0.0" in (lab / "train.py").read_text()  # the user's files untouched
    return lab


def test_codex_night_keeps_its_edit(make_lab, home, monkeypatch):
    need("codex")
    lab = lab_for(make_lab, "codex")
    # codex's own sandbox cannot start inside nightlab's: the built-in argv leaves it off
    assert "danger-full-access" in template("codex", load_config(lab)).argv
    with Scripted("codex", STEPS) as server:
        (home / ".codex").mkdir(exist_ok=True)
        (home / ".codex" / "config.toml").write_text(CODEX_CONFIG.format(url=server.url))
        monkeypatch.setenv("SCRIPTED_API_KEY", KEY)
        night(lab, "codex", server)
    calls = server.model_calls()
    assert calls[0].headers.get("authorization") == f"Bearer {KEY}"
    outputs = [i["output"] for i in calls[-1].body["input"]
               if i.get("type") == "custom_tool_call_output"]  # fmt: skip
    assert len(outputs) == 2 and all("Success." in str(o) for o in outputs), outputs


def test_claude_night_keeps_its_edit(make_lab, home, monkeypatch):
    need("claude")
    with Scripted("claude", STEPS) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        night(lab_for(make_lab, "claude"), "claude", server)
    calls = server.model_calls()
    assert calls[0].headers.get("x-api-key") == KEY
    assert "Is a git repository: false" in calls[0].text()  # the box hides the lab's .git
    results = [b for c in calls for m in c.body["messages"] if isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]  # fmt: skip
    assert results and not any(r.get("is_error") for r in results), results


def test_aider_night_keeps_its_edit(make_lab, home, monkeypatch):
    need("aider")
    with Scripted("aider", STEPS) as server:
        monkeypatch.setenv("OPENAI_API_BASE", f"{server.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("AIDER_MODEL", "openai/scripted")  # the template names no model
        night(lab_for(make_lab, "aider"), "aider", server)
    calls = server.model_calls()
    assert calls[0].headers.get("authorization") == f"Bearer {KEY}"
    assert calls[0].body["model"] == "scripted" and calls[0].body["stream"] is True
