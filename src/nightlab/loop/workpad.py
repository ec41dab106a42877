"""Housekeeping: the workpad (notes, data exploration) and the shared TODO queue that the
worker (and later the mentor) keep with each decision. The store holds them; the files
`.nightlab/artifacts/workpad.md` and `shared_todo.md` are rendered from it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from nightlab.agents.decision import Decision
from nightlab.agents.literature import net
from nightlab.store.db import Note, Todo
from nightlab.store.redact import redact

# New TODOs a cycle may add, by the size of the open backlog: the fuller, the stricter.
TODO_CAPS = ((20, 0), (10, 1), (0, 2))


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def wanted(decision: Decision) -> bool:
    """Whether the decision carries housekeeping (TODOs, notes, citations)."""
    return bool(
        decision.todo_new or decision.resolve_todo_ids or decision.notes_update
        or decision.data_exploration_update or decision.cites
    )  # fmt: skip


def cited(s: Session, keys: list[str]) -> str:
    """The cited papers as a note: each id with its title, year and link from the lab's
    literature cache (an id it does not know is shown as such)."""
    shown = []
    for key in keys:
        try:
            row = s.execute(
                sql("SELECT p.data FROM paper_ids i JOIN papers p ON p.key = i.key "
                     "WHERE i.id = :k"), {"k": key},
            ).first()  # fmt: skip
        except OperationalError:  # a store before the literature cache (migration 0007)
            row = None
        data = row[0] if row is not None else None
        data = json.loads(data) if isinstance(data, str) else data
        if not isinstance(data, dict):
            shown.append(f"{key} (not in the lab's cache)")
            continue
        link = f" <{url}>" if (url := net.url(data.get("url"))) else ""
        title = net.text(data.get("title"), net.TITLE_CHARS) or key
        shown.append(f"{title} ({net.text(str(data.get('year')), 10) or 'n.d.'}, {key}){link}")
    return "cites " + "; ".join(shown)


def apply(s: Session, decision: Decision, trace: str, author: str = "worker") -> dict[str, Any]:
    """Write the decision's housekeeping in the caller's transaction; returns what was done."""
    now = time.time()
    open_ = list(s.scalars(select(Todo).where(Todo.resolved_at.is_(None))))
    resolved = []
    for todo in open_:
        if todo.id in decision.resolve_todo_ids:
            todo.resolved_at, todo.resolved_by = now, trace
            resolved.append(todo.id)
    still_open = [t for t in open_ if t.resolved_at is None]
    cap = next(k for n, k in TODO_CAPS if len(still_open) >= n)
    seen = {_key(t.text) for t in still_open}
    added, dropped = [], []
    for text in decision.todo_new:
        key = _key(text)
        if not key or key in seen:
            dropped.append({"text": text, "why": "duplicate" if key else "empty"})
        elif len(added) >= cap:
            dropped.append({"text": text, "why": f"backlog of {len(still_open)} open"})
        else:
            seen.add(key)
            added.append(text)
            s.add(Todo(created_at=now, trace_id=trace, author=author, text=text.strip()))
    notes = {"notes": decision.notes_update, "data_exploration": decision.data_exploration_update}
    for section, said in notes.items():
        if said and said.strip():
            s.add(Note(ts=now, trace_id=trace, author=author, section=section, text=said.strip()))
    if decision.cites:
        s.add(Note(ts=now, trace_id=trace, author=author, section="notes",
                   text=redact(cited(s, decision.cites))))  # fmt: skip
        notes["cites"] = " ".join(decision.cites)
    return {
        "todo_added": added,
        "todo_dropped": dropped,
        "todo_resolved": resolved,
        "notes": [k for k, v in notes.items() if v and v.strip()],
    }


def changed(done: dict[str, Any]) -> bool:
    return any(done[k] for k in ("todo_added", "todo_resolved", "notes"))


def render(s: Session, artifacts: Path) -> None:
    """Rewrite workpad.md and shared_todo.md from the store."""
    artifacts.mkdir(parents=True, exist_ok=True)
    notes = list(s.scalars(select(Note).order_by(Note.id)))
    out = ["# Workpad"]
    for section, title in (("notes", "Notes"), ("data_exploration", "Data Exploration")):
        out.append(f"\n## {title}\n")
        out += [f"- [{n.trace_id}] {n.text}" for n in notes if n.section == section]
    (artifacts / "workpad.md").write_text("\n".join(out) + "\n")
    mentor = [f"- {n.text}" for n in notes if n.section == "mentor"]
    if mentor:
        (artifacts / "mentor_notes.md").write_text("# Mentor notes\n\n" + "\n".join(mentor) + "\n")
    todos = list(s.scalars(select(Todo).order_by(Todo.id)))
    lines = ["# Shared TODO\n", "## Open\n"]
    lines += [f"- [ ] #{t.id} ({t.author}) {t.text}" for t in todos if t.resolved_at is None]
    lines += ["\n## Resolved\n"]
    lines += [f"- [x] #{t.id} ({t.author}) {t.text}" for t in todos if t.resolved_at is not None]
    (artifacts / "shared_todo.md").write_text("\n".join(lines) + "\n")
