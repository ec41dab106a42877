"""Housekeeping through a night: the decisions' notes and TODOs kept in the store and
rendered to the workpad and TODO files."""

from __future__ import annotations

import pytest

from nightlab import Lab


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
