"""Attacks on what the journal records of a refused decision: it must keep the store
readable and keep secrets out."""

from __future__ import annotations

import sqlite3

import pytest

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


@pytest.mark.xfail(
    strict=True,
    reason="a NaN in a decision's params is stored as `NaN` in decisions.body; SQLite's "
    "json_extract (read.recent_cycles, every prompt) then raises `malformed JSON` and the "
    "night crashes, at every restart. answer.py now drops NaN from a coding agent's file, "
    "but an LLM's structured output (pydantic reads NaN and 1e400), a mentor's replacement "
    "and replay files still carry it: fix in agents/decision.py (`unbounded` refuses "
    "non-finite floats) or journal.body (non-finite numbers recorded as null/strings)",
)
def test_a_refused_decision_with_nan_params_leaves_the_store_readable(tmp_path):
    store, log = journal(tmp_path)
    nan = Decision.model_validate_json(
        '{"action": "run", "rationale": "a boost of NaN", "params": {"boost": NaN}}'
    )
    log.idle("llm:model", nan, ["boost: nan outside [0, 5]"])
    with sqlite3.connect(store.path) as conn:
        conn.row_factory = sqlite3.Row
        signals.compute(conn, 0)  # what every later prompt reads


@pytest.mark.xfail(
    strict=True,
    reason="journal.idle stores the cycle's summary line (the rationale's first 160 "
    "characters and the gate's reasons) and the decision row's `reasons` and `repairs` "
    "unredacted, and appends the line to artifacts/storyline.md: redact `line`, `reasons` "
    "and the notes in journal.idle/body (store.redact.redact / redact_data)",
)
def test_a_secret_in_a_refused_decision_never_reaches_the_store_or_storyline(tmp_path):
    store, log = journal(tmp_path)
    decision = Decision(action="run", rationale=f"the key {KEY} lets me download more data")
    decision.set_notes([f"unknown key {KEY!r} ignored"])
    log.idle("command:x", decision, [f"{KEY[:30]}.py is not editable"])
    with sqlite3.connect(store.path) as conn:
        dump = "\n".join(conn.iterdump())
    assert "ZZZZZZZZZZ" not in dump
    assert "ZZZZZZZZZZ" not in log.storyline.read_text()
