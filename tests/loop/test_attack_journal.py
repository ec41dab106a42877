"""Attacks on what the journal records of a refused decision: it must keep the store
readable and keep secrets out."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from nightlab.agents import signals
from nightlab.agents.decision import Decision
from nightlab.loop.journal import Journal
from nightlab.store.db import Store

KEY = "sk-ant-api03-" + "Z" * 40


def journal(tmp_path) -> tuple[Store, Journal]:
    store = Store(tmp_path / "state.db")
    store.migrate()
    out = Journal(store, tmp_path, "lab", "score")
    out.open_run(None, None, {})
    return store, out


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_decision_with_a_non_finite_param_is_refused_before_it_is_recorded(tmp_path, number):
    """pydantic reads NaN and 1e400 (inf) from a model's JSON; stored in decisions.body they
    made SQLite's json_extract (every prompt reads it) fail: the night crashed at every
    restart. Any worker's decision (an LLM's, a mentor's replacement, a replay line) is
    refused at validation, so it never reaches the record."""
    with pytest.raises(ValidationError, match="not a finite number"):
        Decision.model_validate_json(
            f'{{"action": "run", "rationale": "a boost", "params": {{"boost": {number}}}}}'
        )
    store, log = journal(tmp_path)
    log.idle("llm:model", Decision(action="run", rationale="fine", params={"boost": 1e308}), [])
    with sqlite3.connect(store.path) as conn:
        conn.row_factory = sqlite3.Row
        signals.compute(conn, 0)  # what every later prompt reads


def test_a_secret_in_a_refused_decision_never_reaches_the_store_or_storyline(tmp_path):
    store, log = journal(tmp_path)
    decision = Decision(action="run", rationale=f"the key {KEY} lets me download more data")
    decision.set_notes([f"unknown key {KEY!r} ignored"])
    log.idle("command:x", decision, [f"{KEY[:30]}.py is not editable"])
    with sqlite3.connect(store.path) as conn:
        dump = "\n".join(conn.iterdump())
    assert "ZZZZZZZZZZ" not in dump
    assert "ZZZZZZZZZZ" not in log.storyline.read_text()
