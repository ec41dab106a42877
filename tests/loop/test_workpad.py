"""Housekeeping: TODOs capped by the backlog and deduplicated, and rendered for the worker.
(The workpad files of a whole night: tests/nights/test_housekeeping.py.)"""

from __future__ import annotations

import sqlite3

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
