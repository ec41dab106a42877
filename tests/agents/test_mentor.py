"""The mentor: its cadence, stall forcing, and a challenge that replaces the decision."""

from __future__ import annotations

import json

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nightlab import Lab

from conftest import rows

pytestmark = pytest.mark.slow
REVIEWS: list[str] = []


def mentor_model(messages, info: AgentInfo) -> ModelResponse:
    prompt = messages[-1].parts[-1].content
    REVIEWS.append(prompt)
    review = {"verdict": "on_track", "critique": "steady progress on boost"}
    if '"boost": 0.02' in prompt:  # a change inside the noise: challenge it
        review = {
            "verdict": "off_track",
            "critique": "0.02 is inside the noise band",
            "question": "why not a step larger than 2 sigma?",
            "todo": "measure what a boost of 1.0 does",
            "replacement": {
                "action": "run",
                "rationale": "a step well beyond the noise",
                "params": {"boost": 1.0},
            },
        }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, review)])


def night_with_a_mentor(make_lab, monkeypatch, decisions: list[dict], settings: str):
    """A replayed night whose mentor is `mentor_model`, with these [agents] settings."""
    from nightlab.agents import llm

    monkeypatch.setattr(
        llm, "resolve_model", lambda spec, cfg, role="worker": FunctionModel(mentor_model)
    )
    REVIEWS.clear()
    lab = make_lab(decisions=decisions, max_trials=20)
    toml = lab / "nightlab.toml"
    agents = f'mentor = "function:mentor"\n{settings}\n\n[report]'
    toml.write_text(toml.read_text().replace("[report]", agents))
    Lab(lab).run(report=lambda line: None)
    return lab


def test_mentor_reviews_on_cadence_and_its_challenge_replaces_the_decision(make_lab, monkeypatch):
    decisions = [
        {"action": "run", "rationale": "first probe of the boost", "params": {"boost": 0.3}},
        {"action": "run", "rationale": "a tiny nudge of the boost", "params": {"boost": 0.02}},
        {"action": "run", "rationale": "third probe of the boost", "params": {"boost": 0.6}},
        {"action": "run", "rationale": "fourth probe of the boost", "params": {"boost": 0.7}},
    ]
    lab = night_with_a_mentor(
        make_lab, monkeypatch, decisions, "mentor_every = 2\nmentor_apply_suggestions = true"
    )
    assert len(REVIEWS) == 2  # cycles 2 and 4 of the worker
    assert "regular review" in REVIEWS[0] and '"boost": 0.02' in REVIEWS[0]
    boosts = [
        json.loads(r[0])["boost"]
        for r in rows(lab, "SELECT params FROM trials WHERE kind='trial' ORDER BY id")
    ]
    todos = rows(lab, "SELECT author, text FROM todos")
    assert boosts == [0.3, 1.0, 0.6, 0.7]  # the challenged 0.02 never ran
    assert todos == [("mentor", "measure what a boost of 1.0 does")]
    notes = (lab / ".nightlab" / "artifacts" / "mentor_notes.md").read_text()
    assert "off_track" in notes and "why not a step larger" in notes


def test_a_stall_forces_a_review(make_lab, monkeypatch):
    decisions = [
        {"action": "run", "rationale": f"probe number {i} of boost", "params": {"boost": 0.001 * i}}
        for i in range(1, 6)
    ]
    night_with_a_mentor(make_lab, monkeypatch, decisions, "mentor_every = 100\nstall_trials = 3")
    assert REVIEWS and all("no trial kept in the last 3" in r for r in REVIEWS)
    assert len(REVIEWS) == 3  # the 4th and 5th decisions, and the worker's stop
    assert '"action": "stop"' in REVIEWS[-1]


def test_builder_health_helper_mode_checks_more_often(make_lab, monkeypatch):
    decisions = [
        {"action": "run", "rationale": f"probe number {i} of boost", "params": {"boost": 0.5 * i}}
        for i in range(1, 5)
    ]
    night_with_a_mentor(
        make_lab,
        monkeypatch,
        decisions,
        'mentor_every = 100\ninteraction_mode = "builder_health_helper"\nmentor_health_every = 2',
    )
    assert len(REVIEWS) == 2 and all("health check of the Builder" in r for r in REVIEWS)
