"""Nothing that decides may see the held-out test: after a night whose finish-up ran the
final pick once with NIGHTLAB_TEST=1, a later night's agents (worker and mentor) find no
trace of that test run — not in their context (last trial, leaderboard, storyline, what is
running), not through their tools (tail_log, trial_diff, the leaderboard), and never its
`[objective] test_metric` value."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nightlab import Lab
from nightlab.agents import context
from nightlab.agents.tools import LabView, Withheld
from nightlab.config import load_config
from nightlab.store import read

from conftest import git, rows

# score = 1 + boost + seed noise; the test run prints the held-out figure, then fails (a
# failed trial's log tail is what the worker's context shows)
HELD_OUT = "0.987654"  # the held-out figure: no agent may ever read it, whole or rounded
SIGNS = ("test_acc", "0.9876", "0.9877", "(test)")
TRAIN = """
import json, os, sys
HELD_OUT = "0.987654"
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
print(f"score={1.0 + p.get('boost', 0.0) + 0.01 * ((seed * 7) % 3 - 1)}", flush=True)
if os.environ.get("NIGHTLAB_TEST") == "1":
    print(f"test_acc={HELD_OUT}", flush=True)
    sys.exit("the test run failed after printing the held-out figure")
"""


def probe(boost: float) -> dict:
    return {"action": "run", "rationale": f"probe boost {boost} to map the response",
            "dimension": "optimization", "params": {"boost": boost}}  # fmt: skip


def lab_after_a_test_run(make_lab) -> tuple[Path, int]:
    """A lab whose first night ended with finish-up's test run; (lab, the test run's id)."""
    lab = make_lab(decisions=[probe(0.5), probe(0.9)], max_trials=5)
    (lab / "train.py").write_text(TRAIN)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace(
        'direction = "maximize"', 'direction = "maximize"\ntest_metric = "test_acc"'
    ))  # fmt: skip
    git(lab, "add", "-A")
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1)
    Lab(lab).run(report=lambda line: None)
    (test_run,) = rows(lab, "SELECT id FROM trials WHERE kind='test' AND status != 'running'")
    log = lab / ".nightlab" / "trials" / str(test_run[0]) / "stdout.log"
    assert f"test_acc={HELD_OUT}" in log.read_text()  # the held-out figure is on disk
    return lab, test_run[0]


def calls(test_run: int) -> list[tuple[str, dict]]:
    """What a hostile worker asks of its tools: the test run by id, as a string, negative,
    huge, its diff, and the whole leaderboard."""
    return [
        ("_tail_log", {"trial": test_run, "lines": 500}),
        ("_tail_log", {"trial": str(test_run)}),
        ("_tail_log", {"trial": -test_run}),
        ("_tail_log", {"trial": 10**30}),
        ("_tail_log", {"trial": 0}),
        ("_trial_diff", {"trial": test_run}),
        ("_trial_diff", {"trial": f"{test_run}"}),
        ("_leaderboard", {"top": 50}),
    ]


def test_a_later_nights_agents_never_see_the_test_run(make_lab, monkeypatch):
    from nightlab.agents import llm

    lab, test_run = lab_after_a_test_run(make_lab)
    seen: dict[str, list] = {"prompts": [], "answers": [], "mentor": []}

    def peek(messages, info: AgentInfo) -> ModelResponse:
        parts = [p for m in messages for p in getattr(m, "parts", [])]
        answers = [p for p in parts if isinstance(p, ToolReturnPart)]
        if not answers:  # the first request of this decision: ask every tool at once
            seen["prompts"] += [p.content for p in parts if isinstance(p, UserPromptPart)]
            return ModelResponse(parts=[
                ToolCallPart(name, args, tool_call_id=f"c{i}")
                for i, (name, args) in enumerate(calls(test_run))
            ])  # fmt: skip
        seen["answers"] += [(p.tool_name, str(p.content)) for p in answers]
        decision = {"action": "run", "rationale": "probe boost 0.7 beside the best one",
                    "params": {"boost": 0.7}}  # fmt: skip
        if len(seen["prompts"]) > 1:  # the trial ran: its context was read once more
            decision = {"action": "stop", "rationale": "the boost is mapped well enough now"}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, decision)])

    def mentor(messages, info: AgentInfo) -> ModelResponse:
        parts = [p for m in messages for p in getattr(m, "parts", [])]
        seen["mentor"] += [p.content for p in parts if isinstance(p, UserPromptPart)]
        review = {"verdict": "on_track", "critique": "The night maps the boost; fine."}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, review)])

    monkeypatch.setattr(llm, "resolve_model", lambda spec, cfg, role="worker": FunctionModel(
        peek if role == "worker" else mentor
    ))  # fmt: skip
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace('worker = "replay:decisions.jsonl"',
                 'worker = "function:peek"\nmentor = "function:mentor"\nmentor_every = 1')
        .replace("max_trials = 5", "max_trials = 9")
    )  # fmt: skip
    Lab(lab).run(report=lambda line: None)

    assert len(seen["prompts"]) >= 2 and seen["mentor"]
    for text in seen["prompts"] + seen["mentor"]:
        assert not [sign for sign in SIGNS if sign in text], text
        assert f"trial {test_run} " not in text and f"trial {test_run}:" not in text
    by_tool: dict[str, list[str]] = {}
    for name, answer in seen["answers"]:
        assert not [sign for sign in SIGNS if sign in answer], (name, answer)
        by_tool.setdefault(name, []).append(answer)
    tails, diffs = by_tool["_tail_log"], by_tool["_trial_diff"]
    assert len(tails) >= 5 and len(diffs) >= 2
    assert all(a.startswith("refused: ") for a in tails + diffs), tails + diffs
    assert f"trial {test_run} is the held-out test run" in tails[0]
    assert all(json.loads(line)["trial"] != test_run
               for a in by_tool["_leaderboard"] for line in a.splitlines())  # fmt: skip


def test_the_context_and_its_store_views_leave_the_test_run_out(make_lab):
    lab, test_run = lab_after_a_test_run(make_lab)
    cfg, db = load_config(lab), lab / ".nightlab" / "state.db"
    with read.connect(db) as conn:
        last = read.last_trial(conn)
    assert last is not None and last["id"] != test_run
    ctx = context.gather(cfg, lab, db, trials_left=3, deadline=None, sigma=0.01, in_flight=[],
                         stalled="stalled: no trial kept in the last 6")  # fmt: skip
    assert all(r["kind"] != "test" and r["trial"] != test_run for r in ctx["leaderboard"])
    assert ctx["storyline"] and not any("(test)" in line for line in ctx["storyline"])
    text = context.render({**ctx, "objective": cfg.objective.model_dump()})
    assert not [sign for sign in SIGNS if sign in text], text
    assert "Recent storyline" in text  # the storyline was shown, without the test run's line
    # the people's storyline keeps it
    assert any("(test)" in line for line in read.storyline(db))


def test_trial_ids_that_name_no_trial_are_refused_before_anything_is_read():
    asked: list[int] = []

    def trial_file(trial: int, name: str) -> str | None:
        asked.append(trial)
        if trial == 7:
            raise Withheld("trial 7 is the held-out test run: no agent may read it")
        return "epoch 1 score=0.5\n"

    v = LabView(files=lambda: [], read=lambda p: None, editable=[], leaderboard=lambda k: [],
                trial_file=trial_file)  # fmt: skip
    for hostile in (-1, 0, 10**30, -(10**5000), "7; rm -rf /", "../7", "٧", 7.0, True, None):
        assert v.tail_log(hostile).startswith("refused: no trial"), hostile  # type: ignore[arg-type]
        assert v.trial_diff(hostile).startswith("refused: no trial"), hostile  # type: ignore[arg-type]
    assert asked == []
    assert v.tail_log(7).startswith("refused: trial 7 is the held-out test run")
    assert v.tail_log("7").startswith("refused: trial 7")  # type: ignore[arg-type]
    assert "score=0.5" in v.tail_log(3) and asked[-1] == 3
