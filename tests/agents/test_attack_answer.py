"""Attacks on the lenient decision-file reader (agents/answer.py): what a careless or hostile
coding agent writes must neither stall nor crash the loop, nor put a secret on the record."""

from __future__ import annotations

import json
import time

import pytest

from nightlab.agents.answer import Unreadable, error_tail, parse

KEY = "sk-ant-api03-" + "Q" * 40  # shaped like an API key: redacted wherever it is recorded
RUN = {"action": "run", "rationale": "raise EXTRA: the score should rise by one"}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_never_reaches_the_decision(number):
    """json.loads takes NaN, Infinity and 1e400 (inf); the record's JSON would then hold
    `NaN`, which SQLite's json_extract refuses: every later prompt (signals.recent_cycles)
    raised `malformed JSON` and the night crashed, at every restart too. The field is
    dropped, as any optional field that does not validate, and the note says why."""
    decision, notes = parse(json.dumps(RUN)[:-1] + f', "params": {{"boost": {number}}}}}')
    assert decision.params == {} and json.dumps(decision.model_dump(), allow_nan=False)
    assert any("params dropped" in n and "NaN" in n for n in notes)
    tail = f', "todo_new": ["a"], "params": {{"x": [[{number}]]}}}}'
    nested, _ = parse(json.dumps(RUN)[:-1] + tail)
    assert nested.params == {} and nested.todo_new == ["a"]


def test_a_huge_decision_file_is_refused_at_once():
    """The comment stripper walks the text a character at a time in Python: a 20 MB
    rationale took seconds (a 1 GB one: many minutes and gigabytes), all on the worker's
    thread while the night waits. A decision is a few hundred bytes."""
    raw = json.dumps({**RUN, "rationale": "why " * 5_000_000})
    started = time.monotonic()
    with pytest.raises(Unreadable, match="characters"):
        parse(raw)
    assert time.monotonic() - started < 0.5


def test_an_unknown_key_shaped_like_a_secret_is_redacted_in_the_notes():
    """The notes are stored as they are (journal.body's `repairs`, the decision_repaired
    event is redacted but the decision row is not): an unknown key is the agent's text."""
    _, notes = parse(json.dumps({**RUN, KEY: 1}))
    assert notes and not any("sk-ant-api03-QQQQ" in n for n in notes)


def test_error_tail_redacts_what_the_cli_printed(monkeypatch):
    """The error line becomes the wait's rationale and the cycle's summary line (which
    journal.idle stores and writes to storyline.md without redaction)."""
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-value-123")
    said = error_tail(f"starting\nError: 401 invalid x-api-key {KEY}\nacme-secret-value-123\n")
    assert "401" in said
    assert "sk-ant-api03-QQQQ" not in said and "acme-secret-value-123" not in said


def test_what_held():
    """Deep nesting, an unclosed comment and a fence inside a string are handled."""
    with pytest.raises(Unreadable, match="not JSON"):
        parse('{"action": "run", "rationale": "x", "params": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(Unreadable):
        parse('{"action": "run", "rationale": "long enough /* never closed')
    fenced = {**RUN, "hypothesis": "see ```python\nx = 1\n``` in train.py"}
    assert parse(json.dumps(fenced))[0].hypothesis == fenced["hypothesis"]
    assert parse(json.dumps(fenced, indent=2))[0].hypothesis == fenced["hypothesis"]
