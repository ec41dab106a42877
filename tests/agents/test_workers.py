"""The workers: `replay:FILE` plays decisions back; `search` proposes TPE points inside the
clamps and rebuilds its study from the lab's finished trials on resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from nightlab.agents import AgentError, BaseWorker, make_worker
from nightlab.agents.command import CommandWorker
from nightlab.agents.gate import check
from nightlab.agents.llm import LLMWorker
from nightlab.agents.replay import ReplayError, ReplayWorker
from nightlab.agents.search import SearchWorker
from nightlab.config import Config

from conftest import make_config

COMPLETE, FAIL = "COMPLETE", "FAIL"

SEARCH = {
    "lr": {"low": 1e-4, "high": 0.3, "log": True, "default": 0.01},
    "dropout": {"low": 0.0, "high": 0.5, "default": 0.1},
    "epochs": {"low": 4, "high": 20, "type": "int", "default": 10},
    "width": {"choices": [8, 16, 32, 64], "default": 16},
}


def make_cfg(search: dict | None = None, direction: str = "maximize") -> Config:
    return make_config("val_acc", direction, search=SEARCH if search is None else search)


def finished(params: dict, objective: float | None, status: str = "succeeded"):
    """What the loop hands a worker: a finished trial row."""
    return SimpleNamespace(params=params, status=status, objective=objective)


def score(params: dict) -> float:
    return 1.0 - abs(params["dropout"] - 0.2) - abs(params["epochs"] - 12) / 100


# replay --------------------------------------------------------------------------------------

D1 = {"action": "run", "rationale": "halve the learning rate", "params": {"lr": 0.005}}
D2 = {"action": "wait", "rationale": "waiting for the running trials"}
D3 = {"action": "analyze", "rationale": "look at the confusion matrix"}


def write_lines(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def replay_file(tmp_path):
    return write_lines(
        tmp_path / "decisions.jsonl",
        ["# a night, replayed", json.dumps(D1), "", "   ", "  # indented", json.dumps(D2)]
        + [json.dumps(D3)],
    )


def test_replay_plays_decisions_in_order_then_stops(replay_file):
    worker = ReplayWorker(replay_file, "replay:decisions.jsonl")
    got = [worker.decide({}) for _ in range(3)]
    assert [d.action for d in got] == ["run", "wait", "analyze"]
    assert got[0].params == {"lr": 0.005}
    assert got[0].rationale == D1["rationale"]
    for _ in range(2):
        last = worker.decide({})
        assert last.action == "stop"
        assert "3" in last.rationale


def test_replay_stop_passes_the_gate(replay_file):
    worker = ReplayWorker(replay_file, "replay:x")
    worker.resume([], decided=3)
    assert check(worker.decide({}), make_cfg(), lambda p: None).accepted


def test_replay_resume_continues_after_the_decisions_made(replay_file):
    worker = ReplayWorker(replay_file, "replay:decisions.jsonl")
    worker.resume([], decided=2)
    assert worker.decide({}).action == "analyze"
    assert worker.decide({}).action == "stop"
    worker.resume([], decided=0)
    assert worker.decide({}).action == "run"
    worker.resume([], decided=10)
    assert worker.decide({}).action == "stop"


def test_replay_invalid_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ["# c", json.dumps(D1), '{"action": "run",'])
    with pytest.raises(ReplayError, match=rf"{path}:3: not a valid decision"):
        ReplayWorker(path, "replay:d.jsonl")


@pytest.mark.parametrize(
    "bad",
    [
        {"action": "jump", "rationale": "a long enough rationale"},
        {"action": "run"},
        {**D1, "colour": "blue"},
        [1, 2],
    ],
)
def test_replay_invalid_decision_names_file_and_line(tmp_path, bad):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(D1), json.dumps(bad)])
    with pytest.raises(ReplayError, match=rf"{path}:2: not a valid decision"):
        ReplayWorker(path, "replay:d.jsonl")


def test_make_worker_resolves_replay_files_against_the_lab(tmp_path, replay_file):
    lab = replay_file.parent
    worker = make_worker("replay:decisions.jsonl", make_cfg(), lab)
    assert worker.name == "replay:decisions.jsonl"
    assert worker.decide({}).action == "run"
    absolute = make_worker(f"replay:{replay_file}", make_cfg(), tmp_path / "elsewhere")
    assert absolute.decide({}).action == "run"


def test_make_worker_missing_replay_file_is_an_agent_error(tmp_path):
    with pytest.raises(AgentError, match="nope.jsonl does not exist"):
        make_worker("replay:nope.jsonl", make_cfg(), tmp_path)


def test_make_worker_invalid_replay_file_is_an_agent_error(tmp_path):
    write_lines(tmp_path / "d.jsonl", ["not json"])
    with pytest.raises(AgentError, match=r"d.jsonl:1:"):
        make_worker("replay:d.jsonl", make_cfg(), tmp_path)


@pytest.mark.parametrize("spec", ["llm", "replay", "Search", ""])
def test_make_worker_unknown_spec_is_an_agent_error(tmp_path, spec):
    with pytest.raises(AgentError, match="unknown worker.*command:claude"):
        make_worker(spec, make_cfg(), tmp_path)
    with pytest.raises(AgentError, match="no such coding agent"):
        make_worker("command:./agent.sh", make_cfg(), tmp_path)


# search --------------------------------------------------------------------------------------


def test_search_without_knobs_is_an_agent_error(tmp_path):
    cfg = make_cfg(search={})
    with pytest.raises(ValueError, match=r"\[search.NAME\]"):
        SearchWorker(cfg)
    with pytest.raises(AgentError, match=r"\[search.NAME\]"):
        make_worker("search", cfg, tmp_path)


def test_make_worker_builds_the_search_worker(tmp_path):
    worker = make_worker("search", make_cfg(), tmp_path)
    assert worker.name == "search"
    assert worker.decide({}).action == "run"


@pytest.mark.parametrize(
    ("cls", "slow"),
    [(SearchWorker, False), (ReplayWorker, False), (LLMWorker, True), (CommandWorker, True)],
)
def test_every_built_in_worker_declares_what_the_loop_uses(cls, slow):
    """The Worker protocol, attribute by attribute: the loop probes none of them."""
    assert issubclass(cls, BaseWorker)
    for method in ("decide", "observe", "resume"):
        assert callable(getattr(cls, method))
    assert (cls.slow, cls.wants_context) == (slow, slow)  # the slow ones read the context
    assert cls.view is None and cls.last_usage is None  # until the loop, or a call, sets them


def test_the_fast_workers_built_by_the_factory_have_every_worker_attribute(tmp_path, replay_file):
    for spec, lab in (("search", tmp_path), ("replay:decisions.jsonl", replay_file.parent)):
        worker = make_worker(spec, make_cfg(), lab)
        assert worker.name and worker.slow is False and worker.wants_context is False
        assert worker.view is None and worker.last_usage is None
        worker.view = "the loop's LabView"  # the loop sets it, whatever the worker


def test_search_proposals_stay_inside_the_clamps_and_pass_the_gate():
    cfg = make_cfg()
    worker = SearchWorker(cfg, seed=1)
    seen_widths = set()
    for _ in range(15):  # past TPE's 5 random start-up trials
        decision = worker.decide({})
        params = decision.params
        assert decision.action == "run"
        assert set(params) == set(SEARCH)
        assert cfg.param_violations(params) == []
        assert isinstance(params["epochs"], int)
        assert params["width"] in (8, 16, 32, 64)
        assert 1e-4 <= params["lr"] <= 0.3
        assert check(decision, cfg, lambda p: None).accepted
        seen_widths.add(params["width"])
        worker.observe(finished(params, score(params)))
    assert len(seen_widths) > 1  # it does explore
    states = [t.state.name for t in worker.study.trials]
    assert states == [COMPLETE] * 15
    assert worker.pending == []


def test_search_observe_records_failures_and_values():
    worker = SearchWorker(make_cfg(), seed=0)
    a = worker.decide({}).params
    b = worker.decide({}).params
    worker.observe(finished(b, None, status="failed"))
    worker.observe(finished(a, 0.75))
    trials = worker.study.trials
    assert [t.state.name for t in trials] == [COMPLETE, FAIL]
    assert trials[0].value == 0.75
    assert worker.study.best_value == 0.75


def test_search_observe_adds_trials_it_did_not_propose():
    cfg = make_cfg()
    worker = SearchWorker(cfg)
    worker.observe(finished(cfg.defaults(), 0.5))  # a baseline
    worker.observe(finished({**cfg.defaults(), "lr": 0.1}, 0.6))
    assert [t.value for t in worker.study.trials] == [0.5, 0.6]
    assert worker.study.trials[1].params["lr"] == 0.1


def test_search_resume_rebuilds_the_study_from_finished_trials():
    cfg = make_cfg()
    defaults = cfg.defaults()
    history = [
        finished(defaults, 0.50),
        finished(defaults, 0.52),
        finished({**defaults, "lr": 0.05, "epochs": 12}, 0.61),
        finished({**defaults, "dropout": 0.4}, None, status="failed"),
        finished({**defaults, "epochs": 15}, None, status="timeout"),
        finished({**defaults, "lr": 5.0}, 0.99),  # outside today's clamps: not a point
        finished({"lr": 0.01}, 0.98),  # from an older, smaller space
        finished({**defaults, "momentum": 0.9}, 0.7),  # a dropped knob is ignored
    ]
    worker = SearchWorker(cfg, seed=0)
    old_study = worker.study
    worker.resume(history, decided=len(history))

    assert worker.study is not old_study
    states = [t.state.name for t in worker.study.trials]
    assert states == [COMPLETE, COMPLETE, COMPLETE, FAIL, FAIL, COMPLETE]
    assert worker.study.best_value == 0.7
    assert worker.study.best_params["epochs"] == 10

    proposal = worker.decide({})
    assert cfg.param_violations(proposal.params) == []
    assert len(worker.study.trials) == 7


def test_search_resume_is_reproducible():
    cfg = make_cfg()
    history = [finished(cfg.defaults(), 0.5), finished({**cfg.defaults(), "lr": 0.1}, 0.6)]
    a, b = SearchWorker(cfg, seed=3), SearchWorker(cfg, seed=3)
    a.resume(history, decided=4)
    b.resume(history, decided=4)
    assert [a.decide({}).params for _ in range(3)] == [b.decide({}).params for _ in range(3)]


def test_search_minimizes_when_the_lab_minimizes():
    worker = SearchWorker(make_cfg(direction="minimize"))
    p = worker.decide({}).params
    q = worker.decide({}).params
    worker.observe(finished(p, 0.3))
    worker.observe(finished(q, 0.1))
    assert worker.study.best_value == 0.1


def test_search_int_knob_with_fractional_bounds_stays_inside_the_clamp():
    knob = {"low": 0.5, "high": 2.5, "type": "int", "default": 1}
    try:
        cfg = make_cfg(search={"n": knob})
    except ValidationError:
        return  # refusing such a knob at load is a fine fix too
    worker = SearchWorker(cfg, seed=0)
    proposals = []
    for _ in range(20):
        params = worker.decide({}).params
        proposals.append(params["n"])
        worker.observe(finished(params, float(params["n"])))
    assert [n for n in proposals if cfg.param_violations({"n": n})] == []
