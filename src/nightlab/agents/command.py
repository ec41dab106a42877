"""Coding-agent CLIs as the worker (`command:NAME`): codex, claude, aider or any command.

Each cycle nightlab exports the current best code into a scratch folder (a copy without
.git), writes the prompt (the same compact context an LLM worker reads, plus how to answer),
runs the command there with a timeout, then collects what it did: the files it changed
become whole-file edits, and `.nightlab-decision.json` (which the prompt asks for) gives
the action, rationale, hypothesis and params. The result is an ordinary decision: it passes
the same gate, so a change outside `editable` rejects it whole.

A watchdog: an agent that ends without a usable decision (none written, one that cannot be
read, a question asked instead, a `run` that changes nothing) is asked once more in the same
folder, told why. The agent's whole process tree ends with the night (`stop`): the loop
calls `stop()`, which kills it and whatever it started, sandbox included.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

from nightlab.agents.answer import (
    ANSWER,
    DECISION_FILE,
    MAX_CHARS,
    Unreadable,
    error_tail,
    parse,
)
from nightlab.agents.clis import TEMPLATES, template
from nightlab.agents.context import read_mission, render
from nightlab.agents.decision import Decision, Edit
from nightlab.agents.tools import LabView
from nightlab.agents.worker import BaseWorker
from nightlab.config import Config, matches
from nightlab.store import files
from nightlab.store.paths import LabPaths
from nightlab.trials import process, sandbox
from nightlab.trials.process import Runner

__all__ = ["DECISION_FILE", "TEMPLATES", "CommandAgentError", "CommandWorker", "template"]

JUNK_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints"}
JUNK_PREFIXES = (".aider",)  # aider's history and tags files
ARG_MAX = 100_000  # bytes of a prompt passed as one argv item (Linux: 128 KiB at most)
POINTER = (
    "Your full instructions are in the file {file} (too long for the command line). Read "
    "it first, all of it, and do what it says."
)
MARK = "NIGHTLAB_AGENT_LAB"  # in the agent's environment: what a later sweep finds


class CommandAgentError(Exception):
    """The coding agent ran but gave nothing usable; the message says what and where."""


class Unanswered(CommandAgentError):
    """The agent ended without a usable decision: it is asked once more, told why."""


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
        self._stop = threading.Event()

    def stop(self) -> bool:
        """End the agent now, its whole tree (called from the loop's thread)."""
        self._stop.set()
        return True

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.view is None or self.view.export is None:
            raise CommandAgentError("the loop gave this worker no view of the lab")
        if self._stop.is_set():
            raise CommandAgentError(f"{self.name} was stopped with the night")
        self.runs.mkdir(parents=True, exist_ok=True)
        run = self.runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"
        work = run / "work"
        self.view.export(work)
        base = {p: (work / p).read_bytes() for p in _files(work)}
        prompt = f"{self.mission}\n{render(context)}\n{ANSWER}".lstrip()
        try:
            try:
                return self._attempt(prompt, work, base, run, "output.log")
            except Unanswered as exc:  # the watchdog: once more, told why
                again = f"{prompt}\n# Your previous attempt\n{exc.args[0]}\nFix that now.\n"
                return self._attempt(again, work, base, run, "output-2.log")
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the edits live on in the decision
            shutil.rmtree(run / "settings", ignore_errors=True)  # a copy of its login

    def _attempt(
        self, prompt: str, work: Path, base: dict[str, bytes], run: Path, log: str
    ) -> Decision:
        prompt_file = run / "prompt.md"
        prompt_file.write_text(prompt)
        (work / DECISION_FILE).unlink(missing_ok=True)  # the last attempt's is in run/
        inline = prompt if len(prompt.encode()) <= ARG_MAX else POINTER.format(file=prompt_file)
        values = {
            "prompt": inline,
            "prompt_file": str(prompt_file),
            "decision_file": str(work / DECISION_FILE),
            "workdir": str(work),
        }
        names = [p for p in sorted(base) if matches(p, self.cfg.editable_files)]
        argv = [
            arg
            for item in self.agent.argv
            for arg in (names if item == "{files}" else [item.format(**values, files="")])
        ]
        box = sandbox.agent_box(self.cfg, self.lab, work, prompt_file, argv)
        argv = [*sandbox.prefix(self.cfg, self.lab, box), *argv]
        self._run(argv, work, run / log, prompt)
        return self._collect(work, base, run, run / log, prompt)

    def _run(self, argv: list[str], work: Path, log: Path, prompt: str) -> None:
        env = {
            **os.environ,
            "NIGHTLAB_DECISION_FILE": str(work / DECISION_FILE),
            "NIGHTLAB_PROMPT_FILE": str(log.parent / "prompt.md"),
            MARK: str(self.lab),
        }
        since = time.time()
        try:  # its helpers left behind are killed too, and what left its group
            done = self.runner(argv, cwd=work, env=env, timeout=self.agent.timeout_s, log=log,
                               tick=lambda: not self._stop.is_set())  # fmt: skip
        finally:
            process.sweep(MARK, str(self.lab), since)
        if done.killed == "stopped":
            raise CommandAgentError(f"{self.name} was stopped with the night (output: {log})")
        if done.exit_code is None:
            raise CommandAgentError(
                f"{self.name} ran past its {self.agent.timeout_s:g} s timeout and was "
                f"killed (output: {log})"
            )
        if done.exit_code != 0:
            raise CommandAgentError(
                f"{self.name} exited with status {done.exit_code}: "
                f"{error_tail(files.tail(log), prompt)} (output: {log})"
            )

    def _collect(
        self, work: Path, base: dict[str, bytes], run: Path, log: Path, prompt: str
    ) -> Decision:
        edits, problems = self._edits(work, base)
        if problems:  # hostile or careless: no second chance
            raise CommandAgentError(f"{self.name}: " + "; ".join(problems))
        raw = _read_answer(work / DECISION_FILE)
        if raw is None:
            said = error_tail(files.tail(log), prompt)
            asked = said.rstrip().endswith("?")
            said = said.rsplit(" | ", 1)[-1] if asked else said  # the question
            raise Unanswered(
                f"{self.name} wrote no {DECISION_FILE} (the prompt asks for it)"
                + (" and asked a question instead; nobody answers questions: decide" if asked
                   else "")  # fmt: skip
                + f": {said} (output: {log})"
            )
        (run / "decision.json").write_text(raw)
        try:
            decision, notes = parse(raw)
        except Unreadable as exc:
            raise Unanswered(
                f"{self.name}: {DECISION_FILE} is not a valid decision: {exc}"
            ) from None
        if notes:
            (run / "notes.txt").write_text("".join(f"{n}\n" for n in notes))
        if decision.action == "run" and not edits and not decision.params and not decision.edits:
            raise Unanswered(
                f"{self.name} chose `run` but changed no file and set no params: that trial "
                "already ran; change the code or params, or choose another action"
            )
        (run / "changed.txt").write_text("".join(f"{e.file}\n" for e in edits))
        merged = decision.model_copy(update={"edits": [*edits, *decision.edits]})
        merged.set_notes(notes)
        return merged

    def _edits(self, work: Path, base: dict[str, bytes]) -> tuple[list[Edit], list[str]]:
        """The files the agent changed, as whole-file edits, and what it did that no
        decision may (delete, link, a FIFO, binary content)."""
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
        return edits, problems

    def observe(self, trial: Any) -> None:
        pass  # the store is its memory: each prompt is rebuilt from it

    def resume(self, finished: list[Any], decided: int) -> None:
        clean(self.lab)  # the loop starts (holding the lab): what a killed loop left


def clean(lab: Path) -> None:
    """Kill agents a loop killed outright left running (their environment names this lab)
    and remove their scratch folders and settings copies; the run folders (prompt, output)
    stay."""
    process.sweep(MARK, str(lab), 0.0)
    runs = LabPaths(lab).agents
    if runs.is_dir():
        for left in (*runs.glob("*/work"), *runs.glob("*/settings")):
            shutil.rmtree(left, ignore_errors=True)


def _read_answer(path: Path) -> str | None:
    """The decision file's text, at most MAX_CHARS + 1 bytes of it (parse refuses more);
    None when it is missing or not a regular file (a link would read a host file, a FIFO
    would block). Opened once, then checked: nothing can swap it in between."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read(MAX_CHARS + 1).decode(errors="replace")


def _files(root: Path) -> list[str]:
    """Files under `root`, relative, without the caches and histories tools leave behind."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in JUNK_DIRS]
        for name in names:
            if not name.startswith(JUNK_PREFIXES) and not name.endswith(".pyc"):
                out.append(Path(folder, name).relative_to(root).as_posix())
    return out
