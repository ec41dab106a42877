"""The coding-agent CLIs nightlab knows (`command:codex`, `command:claude`, `command:aider`):
their command lines for the current releases, and the version range each template is known
to work with, probed with `--version` at start.

A CLI changes its flags between releases (codex 0.147 removed `exec --full-auto`), and a
template that no longer fits fails every cycle; so a built-in template runs only against a
release in its range, and the error names the range and the way out (install a supported
release, or write your own `[agents.commands.NAME]`, which is not probed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from nightlab.agents.errors import AgentError
from nightlab.config import CommandAgent, Config

# `--` ends the options: a prompt starting with "-" (a mission's "- item" or "---") is text.
TEMPLATES = {
    "codex": [
        "codex", "exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "--",
        "{prompt}",
    ],
    "claude": ["claude", "-p", "--permission-mode", "acceptEdits", "--", "{prompt}"],
    "aider": ["aider", "--yes-always", "--no-git", "--message-file", "{prompt_file}", "{files}"],
}
PLACEHOLDERS = ("prompt", "prompt_file", "decision_file", "workdir", "files")
PROBE_S = 30.0  # `--version` of a node CLI can take seconds on a cold disk

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Supported:
    low: Version  # the oldest release the template works with
    high: Version  # the first release it is not known to work with
    install: str  # how to get a supported one

    def describe(self) -> str:
        return f"{_show(self.low)} ≤ version < {_show(self.high)}"


SUPPORTED = {
    "codex": Supported((0, 147, 0), (1, 0, 0), "npm install -g @openai/codex@0.171.0"),
    "claude": Supported((2, 0, 0), (3, 0, 0), "npm install -g @anthropic-ai/claude-code@2.1.332"),
    "aider": Supported((0, 80, 0), (1, 0, 0), "pip install aider-chat==0.86.2"),
}


def template(name: str, cfg: Config) -> CommandAgent:
    """The command for `command:NAME`; an unknown name, a bad placeholder, a missing
    program or (for a built-in template) a release outside its range fails now."""
    agent = cfg.agents.commands.get(name)
    built_in = agent is None and name in TEMPLATES
    if built_in:
        agent = CommandAgent(argv=TEMPLATES[name])
        if name == "codex" and cfg.trial.sandbox == "bwrap":
            # codex's own sandbox cannot start inside nightlab's (its patches then fail
            # and it exits 0 without a decision): nightlab's bubblewrap seals it instead
            agent = CommandAgent(argv=[
                "danger-full-access" if a == "workspace-write" else a for a in agent.argv
            ])  # fmt: skip
    if agent is None:
        known = sorted({*TEMPLATES, *cfg.agents.commands})
        raise AgentError(
            f"worker 'command:{name}': no such coding agent; use one of {known} or add "
            f'[agents.commands.{name}] argv = ["my-agent", "{{prompt_file}}"] to nightlab.toml'
        )
    for item in agent.argv:
        try:
            item.format(**{key: "" for key in PLACEHOLDERS})
        except (KeyError, IndexError, ValueError) as exc:
            raise AgentError(
                f"[agents.commands.{name}] argv item {item!r}: unknown placeholder {exc}; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            ) from None
    program = shutil.which(agent.argv[0])
    if program is None:
        raise AgentError(
            f"worker 'command:{name}' runs {agent.argv[0]!r}, which is not on PATH: install "
            f"it, or set [agents.commands.{name}] argv to where it is"
        )
    if built_in:
        probe(name, program)
    return agent


def probe(name: str, program: str) -> Version:
    """The release of a built-in CLI (`PROGRAM --version`), which must be in its range."""
    supported = SUPPORTED[name]
    fix = (
        f"install a supported release ({supported.install}), or write your own "
        f"[agents.commands.{name}] argv for this one (it is not probed)"
    )
    try:
        done = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=PROBE_S,
            stdin=subprocess.DEVNULL, errors="replace",
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(
            f"worker 'command:{name}': `{program} --version` failed ({exc}); {fix}"
        ) from None
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        said = (done.stdout + done.stderr).strip().splitlines()
        raise AgentError(
            f"worker 'command:{name}': `{program} --version` said "
            f"{said[0][:200] if said else 'nothing'!r} (exit {done.returncode}), not a "
            f"version; the built-in template needs {supported.describe()}: {fix}"
        )
    version = (int(found[1]), int(found[2]), int(found[3]))
    if not supported.low <= version < supported.high:
        raise AgentError(
            f"worker 'command:{name}': {program} is release {_show(version)}; the built-in "
            f"template works with {supported.describe()}: {fix}"
        )
    return version


def _show(version: Version) -> str:
    return ".".join(map(str, version))
