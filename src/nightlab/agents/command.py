"""Coding-agent CLIs as the worker (`command:NAME`): codex, claude, aider or any command.

Each cycle nightlab exports the current best code into a scratch folder (a copy without
.git), writes the prompt (the same compact context an LLM worker reads, plus how to answer),
runs the command there with a timeout, then collects what it did: the files it changed
become whole-file edits, and `.nightlab-decision.json` (which the prompt asks for) gives
the action, rationale, hypothesis and params. The result is an ordinary decision: it passes
the same gate, so a change outside `editable` rejects it whole.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nightlab.agents.context import read_mission, render
from nightlab.agents.decision import Decision, Edit
from nightlab.agents.errors import AgentError
from nightlab.agents.tools import LabView
from nightlab.agents.worker import BaseWorker
from nightlab.config import CommandAgent, Config, matches
from nightlab.store import files
from nightlab.store.paths import LabPaths
from nightlab.trials import sandbox
from nightlab.trials.process import Runner

TEMPLATES = {  # built in; [agents.commands.NAME] overrides or adds
    "codex": [
        "codex", "exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "--",
        "{prompt}",
    ],
    "claude": ["claude", "-p", "--permission-mode", "acceptEdits", "--", "{prompt}"],
    "aider": ["aider", "--yes-always", "--no-git", "--message-file", "{prompt_file}", "{files}"],
}
DECISION_FILE = ".nightlab-decision.json"
PLACEHOLDERS = ("prompt", "prompt_file", "decision_file", "workdir", "files")
JUNK_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"}
JUNK_PREFIXES = (".aider",)  # aider's history and tags files

ANSWER = f"""
# How to answer
You work in a copy of the lab's code (the current best). Change the editable files
directly if the next trial needs a code change; change nothing else, and do not run the
training: nightlab runs it. Then write the file `{DECISION_FILE}` in this folder with one
JSON object:
{{"action": "run" | "wait" | "analyze" | "research" | "stop",
  "rationale": "why this, now, given the evidence",
  "hypothesis": "what should happen to the objective, and why",
  "dimension": "augmentation|preprocessing|data_sampling|loss|model_arch|optimization|evaluation",
  "params": {{"name": value}},       // overrides on top of the best trial's parameters
  "todo_new": [], "notes_update": null, "resolve_todo_ids": []}}
Only `run` may change code or params. Changes outside the editable files reject the decision.
"""


class CommandAgentError(Exception):
    """The coding agent ran but gave nothing usable; the message says what and where."""


def template(name: str, cfg: Config) -> CommandAgent:
    """The command for `command:NAME`; an unknown name or a missing program fails now."""
    agent = cfg.agents.commands.get(name)
    if agent is None and name in TEMPLATES:
        agent = CommandAgent(argv=TEMPLATES[name])
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
    if shutil.which(agent.argv[0]) is None:
        raise AgentError(
            f"worker 'command:{name}' runs {agent.argv[0]!r}, which is not on PATH: install "
            f"it, or set [agents.commands.{name}] argv to where it is"
        )
    return agent


class CommandWorker(BaseWorker):
    wants_context = True
    slow = True  # minutes per decision: it thinks while the loop watches the trials

    def __init__(self, name: str, cfg: Config, lab: Path, *, runner: Runner) -> None:
        self.name = f"command:{name}"
        self.agent = template(name, cfg)
        self.cfg, self.lab = cfg, lab
        self.runner = runner  # runs the CLI in its own session, killed whole at the timeout
        self.mission = read_mission(lab, cfg, "worker")
        self.runs = LabPaths(lab).agents
        self.view: LabView | None = None  # given by the loop before the first decision
        self.last_usage = None  # a CLI reports no tokens nightlab can count

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.view is None or self.view.export is None:
            raise CommandAgentError("the loop gave this worker no view of the lab")
        self.runs.mkdir(parents=True, exist_ok=True)
        run = self.runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
        work = run / "work"
        self.view.export(work)
        base = {p: (work / p).read_bytes() for p in _files(work)}
        prompt = f"{self.mission}\n{render(context)}\n{ANSWER}".lstrip()
        (run / "prompt.md").write_text(prompt)
        values = {
            "prompt": prompt,
            "prompt_file": str(run / "prompt.md"),
            "decision_file": str(work / DECISION_FILE),
            "workdir": str(work),
        }
        files = [p for p in sorted(base) if matches(p, self.cfg.editable_files)]
        argv = [
            arg
            for item in self.agent.argv
            for arg in (files if item == "{files}" else [item.format(**values, files="")])
        ]
        box = sandbox.agent_box(self.cfg, self.lab, work, run / "prompt.md", argv)
        argv = [*sandbox.prefix(self.cfg, self.lab, box), *argv]
        try:
            self._run(argv, work, run / "output.log")
            return self._collect(work, base, run)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the edits live on in the decision

    def _run(self, argv: list[str], work: Path, log: Path) -> None:
        env = {
            **os.environ,
            "NIGHTLAB_DECISION_FILE": str(work / DECISION_FILE),
            "NIGHTLAB_PROMPT_FILE": str(log.parent / "prompt.md"),
        }
        # its helpers left behind are killed too
        done = self.runner(argv, cwd=work, env=env, timeout=self.agent.timeout_s, log=log)
        if done.exit_code is None:
            raise CommandAgentError(
                f"{self.name} ran past its {self.agent.timeout_s:g} s timeout and was "
                f"killed (output: {log})"
            )
        if done.exit_code != 0:
            raise CommandAgentError(
                f"{self.name} exited with status {done.exit_code}: {_tail(log)} (output: {log})"
            )

    def _collect(self, work: Path, base: dict[str, bytes], run: Path) -> Decision:
        answer = work / DECISION_FILE
        if answer.is_symlink() or not answer.is_file():  # a link would read a host file
            raise CommandAgentError(
                f"{self.name} wrote no {DECISION_FILE} (the prompt asks for it): "
                f"{_tail(run / 'output.log')} (output: {run / 'output.log'})"
            )
        raw = answer.read_text(errors="replace")
        (run / "decision.json").write_text(raw)
        try:
            decision = Decision.model_validate_json(raw)
        except ValidationError as exc:
            raise CommandAgentError(
                f"{self.name}: {DECISION_FILE} is not a valid decision: {exc}"[:2000]
            ) from None
        edits, problems = [], []
        now = set(_files(work)) - {DECISION_FILE}
        for path in sorted(base.keys() - now):
            problems.append(f"it deleted {path} (a decision can change files, not delete them)")
        for path in sorted(now):
            full = work / path
            if full.is_symlink():
                problems.append(f"it made {path} a symlink")
                continue
            if not stat.S_ISREG(full.lstat().st_mode):  # a FIFO would block the loop
                problems.append(f"it made {path} something other than a file")
                continue
            data = full.read_bytes()
            if base.get(path) == data:
                continue
            try:
                edits.append(Edit(file=path, search="", replace=data.decode()))
            except UnicodeDecodeError:
                problems.append(f"it wrote binary content to {path}")
        if problems:
            raise CommandAgentError(f"{self.name}: " + "; ".join(problems))
        (run / "changed.txt").write_text("".join(f"{e.file}\n" for e in edits))
        return decision.model_copy(update={"edits": [*edits, *decision.edits]})

    def observe(self, trial: Any) -> None:
        pass  # the store is its memory: each prompt is rebuilt from it

    def resume(self, finished: list[Any], decided: int) -> None:
        pass


def _files(root: Path) -> list[str]:
    """Files under `root`, relative, without the caches and histories tools leave behind."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in JUNK_DIRS]
        for name in names:
            if not name.startswith(JUNK_PREFIXES) and not name.endswith(".pyc"):
                out.append(Path(folder, name).relative_to(root).as_posix())
    return out


def _tail(log: Path, chars: int = 600) -> str:
    text = files.tail(log).strip()
    return f"…{text[-chars:]}" if len(text) > chars else text or "no output"
