"""Housekeeping: TODOs capped by the backlog and deduplicated, notes kept, files rendered."""

from __future__ import annotations

import sqlite3

import pytest

from nightlab import Lab
from nightlab.agents.context import render
from nightlab.agents.decision import Decision
from nightlab.loop import workpad
from nightlab.store import read
from nightlab.store.db import Store


def wait(**housekeeping) -> Decision:
    return Decision(action="wait", rationale="housekeeping only, nothing to run", **housekeeping)


def test_todo_caps_tighten_as_the_backlog_grows_and_duplicates_drop(tmp_path):
    store = Store(tmp_path / "state.db")
    store.migrate()
    added = []
    for cycle in range(20):
        with store.tx() as s:
            done = workpad.apply(
                s, wait(todo_new=[f"idea {cycle} a", f"idea {cycle} b"]), f"t{cycle}"
            )
        added.append(len(done["todo_added"]))
    assert added[:5] == [2] * 5  # 0..8 open: two a cycle
    assert set(added[5:15]) == {1}  # 10..19 open: one
    assert added[15:] == [0] * 5  # 20 open: none
    with store.tx() as s:
        done = workpad.apply(s, wait(todo_new=["Idea 4 B!"], resolve_todo_ids=[1, 2, 3]), "x")
    assert done["todo_resolved"] == [1, 2, 3]
    assert done["todo_dropped"][0]["why"] == "duplicate"
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.row_factory = sqlite3.Row
    focus = read.todo_focus(conn)
    assert focus["open"] == 17 and [t["id"] for t in focus["focus"]] == [4, 20]
    text = render({"objective": {"metric": "m", "direction": "maximize"}, "todos": focus})
    assert "Open TODOs: 17" in text and "#4" in text and "#20" in text
    conn.close()


@pytest.mark.slow
def test_a_night_keeps_the_workpad_and_renders_it(make_lab):
    decisions = [
        {
            "action": "run",
            "rationale": "try a bigger boost as a first probe",
            "params": {"boost": 0.5},
            "todo_new": ["check the noise band", "try boost 1.0"],
            "notes_update": "boost looks monotone",
            "data_exploration_update": "scores ~1.0",
        },
        {
            "action": "analyze",
            "rationale": "look back at what the first probe taught",
            "resolve_todo_ids": [1],
            "todo_new": ["try boost 1.0"],
        },
    ]
    lab = make_lab(decisions=decisions, max_trials=10)
    Lab(lab).run(report=lambda line: None)
    art = lab / ".nightlab" / "artifacts"
    pad = (art / "workpad.md").read_text()
    assert "## Notes" in pad and "boost looks monotone" in pad and "scores ~1.0" in pad
    todo = (art / "shared_todo.md").read_text()
    assert "- [x] #1 (worker) check the noise band" in todo
    assert "- [ ] #2 (worker) try boost 1.0" in todo and todo.count("try boost 1.0") == 1
