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


def test_a_model_whose_provider_client_is_missing_is_one_line(tmp_path, without):  # noqa: F811
    """pydantic-ai installed without its OpenAI client (`pip install pydantic-ai-slim`): the
    night is refused with one line (pydantic-ai's, naming the install), not a traceback; the
    mentor the same way."""
    lab = tiny(tmp_path)
    proc = without("openai")("run", str(lab), "--worker", "openai:gpt-4o", timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "openai" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    db = lab / ".nightlab" / "state.db"
    assert not db.exists() or rows(lab, "SELECT id FROM trials") == []


def test_a_mentor_whose_provider_client_is_missing_is_one_line(tmp_path, without):  # noqa: F811
    lab = tiny(tmp_path, agents='mentor = "anthropic:claude-sonnet-4-5"')
    proc = without("anthropic")("run", str(lab), timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2 and "anthropic" in proc.stderr, (proc.stdout, proc.stderr)
