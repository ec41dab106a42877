"""Hostile review of the optional extras: the literature extra's features (the `research`
action, `nightlab papers`) without its client libraries installed, and the other extras
reached by paths that are not `run`/`start`: never a traceback."""

from __future__ import annotations

import json

from test_extras import tiny, without  # noqa: F401  (the fixture)

from conftest import rows

LITERATURE = ("arxiv", "pyalex", "semanticscholar", "httpx")


def test_papers_without_the_literature_extra_is_one_line(tmp_path, without):  # noqa: F811
    lab = tiny(tmp_path)
    proc = without(*LITERATURE)("papers", str(lab), "deep learning testing", timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "nightlab[literature]" in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)


def test_a_research_action_without_the_literature_extra_does_not_crash_the_night(
    tmp_path,
    without,  # noqa: F811
):
    lab = tiny(tmp_path)
    decisions = [{"action": "research", "query": "deep learning testing", "rationale": "read"},
                 {"action": "stop", "rationale": "done"}]  # fmt: skip
    (lab / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    toml = (lab / "nightlab.toml").read_text()
    (lab / "nightlab.toml").write_text(
        toml.replace('worker = "search"', 'worker = "replay:decisions.jsonl"', 1)
    )
    proc = without(*LITERATURE)("run", str(lab), timeout=180)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert rows(lab, "SELECT id FROM trials")
