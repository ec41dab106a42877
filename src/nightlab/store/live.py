"""What `nightlab watch` asks of the store each refresh: the trials running now and how far
the night is (trials counted against max_trials, its deadline). Indexed queries only: a
refresh costs the same on a lab of 100,000 trials as on a new one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from nightlab.store import read
from nightlab.store.kinds import EXPLORING, INTERRUPTED_SQL

MAX_PARAMS_CHARS = 4096  # a params column longer than this is shown as cut text, not decoded


def running(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The trials running now, in id order: id, kind, params (decoded; a very long one is
    its cut JSON text), hypothesis, slot, the trial it confirms, and when it started."""
    rows = conn.execute(
        "SELECT id, kind, params, hypothesis, slot, confirms, started_at FROM trials "
        "WHERE status = 'running' ORDER BY id"
    ).fetchall()
    out = []
    for r in rows:
        text = r["params"] or "{}"
        try:
            params = json.loads(text) if len(text) <= MAX_PARAMS_CHARS else text
        except ValueError:
            params = text
        out.append({**dict(r), "params": params if isinstance(params, dict | str) else text})
    return out


def progress(conn: sqlite3.Connection) -> dict[str, Any]:
    """The night's progress: trials counted against max_trials (baseline repeats and worker
    trials, not those nightlab cut short itself), the latest run's max_trials option, its
    start and deadline."""
    kinds = ", ".join(f"'{k}'" for k in EXPLORING)
    counted = conn.execute(
        f"SELECT COUNT(*) FROM trials WHERE kind IN ({kinds}) AND NOT {INTERRUPTED_SQL}"
    ).fetchone()[0]
    run = conn.execute(
        "SELECT started_at, deadline_at, options FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    options: dict[str, Any] = {}
    if run is not None:
        try:
            options = json.loads(run["options"] or "{}")
        except ValueError:
            options = {}
    max_trials = options.get("max_trials") if isinstance(options, dict) else None
    return {
        "counted": counted,
        "max_trials": max_trials if isinstance(max_trials, int) else None,
        "started_at": None if run is None else run["started_at"],
        "deadline_at": None if run is None else run["deadline_at"],
    }


def snapshot(db: Path) -> dict[str, Any]:
    """`running` and `progress` in one read (empty before the first run made the store)."""
    try:
        with read.connect(db) as conn:
            return {"running": running(conn), "progress": progress(conn)}
    except (FileNotFoundError, sqlite3.OperationalError):
        empty = {"counted": 0, "max_trials": None, "started_at": None, "deadline_at": None}
        return {"running": [], "progress": empty}
