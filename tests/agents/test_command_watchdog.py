"""A coding agent that slips: a prompt read as an option, a prompt too long for argv, a CLI
outside its template's range, no decision, a question instead of one, a decision file as
models write it, an error buried under an echoed prompt, the same failure night after night.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from test_command import CONTEXT, FAKE, with_agent, worker

from nightlab import Lab
from nightlab.agents import AgentError, make_worker
from nightlab.agents.command import ARG_MAX, CommandAgentError
from nightlab.config import load_config

from conftest import rows

# A stand-in `claude` that parses its options as the real one does: an option it does not
# know, before `--`, is an error; after `--`, the prompt. Then the fake agent does the work.
STRICT_CLI = f"""#!{sys.executable}
import os, sys
if sys.argv[1:] == ["--version"]:
    print("2.1.332 (Claude Code)")
    sys.exit(0)
args, known = sys.argv[1:], {{"-p", "--permission-mode", "acceptEdits"}}
while args and args[0] != "--":
    if args[0] not in known:
        sys.exit(f"error: unknown option '{{args[0][:40]}}'")
    args.pop(0)
prompt = args[1]
print("PROMPT", len(prompt.encode()), repr(prompt[:300]), flush=True)  # into output.log
fake = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fake_agent.py")  # beside it
os.execv(sys.executable, [sys.executable, fake, os.environ["NIGHTLAB_PROMPT_FILE"],
         os.environ["NIGHTLAB_DECISION_FILE"], "good"])
"""


def strict_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str = "") -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "claude"
    text = STRICT_CLI if not version else STRICT_CLI.replace("2.1.332", version)
    script.write_text(text)
    script.chmod(0o755)
    shutil.copy(FAKE, bin_dir / "fake_agent.py")  # in its install folder, shown in its box
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def mission(lab: Path, text: str) -> None:
    (lab / "WORKER_MISSION.md").write_text(text)


def last_run(lab: Path) -> Path:
    return max((lab / ".nightlab" / "agents").iterdir(), key=lambda p: p.stat().st_mtime)


def said(lab: Path) -> tuple[int, str]:
    """What the stand-in CLI got as its prompt: its size and its start."""
    line = next(ln for ln in (last_run(lab) / "output.log").read_text().splitlines()
                if ln.startswith("PROMPT "))  # fmt: skip
    _, size, start = line.split(" ", 2)
    return int(size), ast.literal_eval(start)


def test_a_mission_starting_with_a_dash_is_the_prompt_not_an_option(
    make_lab, tmp_path, monkeypatch
):
    strict_claude(tmp_path, monkeypatch)
    lab = make_lab()
    mission(lab, "- be brief\n---\nTry one thing at a time.\n")
    decision = worker(lab, "claude").decide(CONTEXT)
    assert decision.action == "run" and [e.file for e in decision.edits] == ["train.py"]
    assert said(lab)[1].startswith("- be brief")


def test_a_prompt_too_long_for_the_command_line_goes_by_its_file(
    make_lab, tmp_path, monkeypatch
):
    strict_claude(tmp_path, monkeypatch)
    lab = make_lab()
    mission(lab, "Context you must read. " * 9000)  # ~200 KiB: over Linux's 128 KiB argv item
    decision = worker(lab, "claude").decide(CONTEXT)
    assert decision.action == "run"
    run = last_run(lab)
    size, shown = said(lab)
    assert size < ARG_MAX and str(run / "prompt.md") in shown
    assert len((run / "prompt.md").read_bytes()) > 180_000  # the whole prompt, in its file


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.4.0 (Claude Code)", r"release 1\.4\.0; the built-in template works with 2\.0\.0 ≤"),
        ("1.0.99", r"release 1\.0\.99"),
        ("claude (dev build)", "not a version"),
    ],
)
def test_a_cli_outside_its_templates_range_fails_at_start(
    make_lab, tmp_path, monkeypatch, version, message
):
    strict_claude(tmp_path, monkeypatch, version=version)
    lab = make_lab()
    with pytest.raises(AgentError, match=message) as caught:
        make_worker("command:claude", load_config(lab), lab)
    assert "@anthropic-ai/claude-code@" in str(caught.value)  # how to get a supported one
    assert "[agents.commands.claude]" in str(caught.value)
    toml = lab / "nightlab.toml"  # the user's own command for it is not probed
    toml.write_text(toml.read_text() + '\n[agents.commands.claude]\nargv = ["claude", "--", '
                    '"{prompt}"]\n')  # fmt: skip
    assert make_worker("command:claude", load_config(lab), lab).name == "command:claude"


def test_an_agent_that_ends_without_a_decision_is_asked_once_more(make_lab):
    lab = with_agent(make_lab(), "twice")
    decision = worker(lab).decide(CONTEXT)
    assert decision.action == "run" and [e.file for e in decision.edits] == ["train.py"]
    run = last_run(lab)
    prompt = (run / "prompt.md").read_text()
    assert "# Your previous attempt" in prompt and "wrote no .nightlab-decision.json" in prompt
    assert (run / "output.log").read_text().strip() == "done, I think"
    assert (run / "output-2.log").is_file()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("question", "asked a question instead; nobody answers questions: decide: Should I"),
        ("nothing", "chose `run` but changed no file and set no params"),
        ("invalid", "is not a valid decision: action: Input should be"),
    ],
)
def test_a_question_or_an_empty_answer_is_asked_again_then_an_error(make_lab, mode, message):
    lab = with_agent(make_lab(), mode)
    with pytest.raises(CommandAgentError, match=message):
        worker(lab).decide(CONTEXT)
    run = last_run(lab)
    assert (run / "output-2.log").is_file()  # asked twice, no more
    assert not (run / "output-3.log").exists() and not (run / "work").exists()


def test_a_decision_file_as_models_write_it_is_read_and_the_repairs_noted(make_lab):
    lab = with_agent(make_lab(), "fenced")
    decision = worker(lab).decide(CONTEXT)
    assert decision.action == "run" and decision.todo_new == ["a", "b"]
    assert decision.rationale == "EXTRA raised; see https://example.org/a//b"  # not a comment
    assert decision.dimension is None and [e.file for e in decision.edits] == ["train.py"]
    notes = (last_run(lab) / "notes.txt").read_text()
    assert decision.notes == notes.splitlines()
    for said in ("fence", "comments", "unknown key 'confidence'", "dimension dropped",
                 "1 TODO(s) past the 2 allowed"):  # fmt: skip
        assert said in notes


def test_the_repairs_are_on_the_trials_record(make_lab):
    lab = with_agent(make_lab(max_trials=4), "fenced")
    Lab(lab).run(report=lambda line: None)
    ((trial, data),) = rows(lab, "SELECT trial_id, data FROM events WHERE kind='decision_repaired'")
    assert "unknown key 'confidence' ignored" in json.loads(data)["notes"]
    ((body,),) = rows(lab, "SELECT d.body FROM decisions d JOIN trials t ON t.decision_id = d.id "
                           "WHERE t.id = ?", trial)  # fmt: skip
    assert json.loads(body)["todo_new"] == ["a", "b"] and json.loads(body)["repairs"]


def test_the_error_shown_is_the_error_line_not_the_echoed_prompt(make_lab):
    lab = with_agent(make_lab(), "echo")
    with pytest.raises(CommandAgentError) as caught:
        worker(lab).decide(CONTEXT)
    said = str(caught.value)
    assert "exited with status 1: Error: 401 Unauthorized" in said
    assert "# Objective" not in said and "How to answer" not in said


def test_a_cli_failing_the_same_way_ends_the_night_in_one_line(make_lab):
    lab = with_agent(make_lab(max_trials=10), "fail")
    lines: list[str] = []
    started = time.monotonic()
    final = Lab(lab).run(report=lines.append)
    took = time.monotonic() - started
    errors = [line for line in lines if line.startswith("worker error")]
    assert len(errors) == 3 and "refused the key" in errors[0]
    ((reason,),) = rows(lab, "SELECT end_reason FROM runs")
    assert reason.startswith("the worker failed 3 times in a row the same way")
    assert "refused the key" in reason and final["trials"]["total"] == 3  # the baseline only
    assert took < 60  # not 20 silent backoffs


def test_different_failures_do_not_end_the_night_early(make_lab):
    lab = with_agent(make_lab(max_trials=4), "fail")
    cfg = load_config(lab)
    w = make_worker(cfg.agents.worker, cfg, lab)
    from nightlab.loop.cycle import Cycles
    from nightlab.loop.lines import Lines

    class Night:  # what _failed uses of the night
        def __init__(self) -> None:
            self.cfg, self.lines = cfg, []
            self.report = Lines(self.lines.append)

    cycles = Cycles.__new__(Cycles)
    cycles.night, cycles.stop_reason = Night(), None
    cycles.same_errors, cycles._last_error = 0, ""
    for error in ("timeout after 900 s", "exited with status 1", "timeout after 901 s"):
        cycles._failed(CommandAgentError(f"{w.name} {error}"))
    assert cycles.stop_reason is None and cycles.same_errors == 1
