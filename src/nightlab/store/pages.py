"""Read queries of the dashboard's pages, through the standard library's sqlite3 like read.py.

Every query is bounded (LIMIT, a primary-key range or an index) or aggregated in SQL: a page
of a lab with 100,000 trials never loads every trial into Python. Writes never happen here.
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
from typing import Any

from nightlab.store.read import candidate_runs, estimate

SCATTER_POINTS = 2000  # past this many trials the scatter shows each id bucket's min and max
CANDIDATE_COLUMNS = "id, kind, status, objective, confirms, seed, reason"  # as read.estimate wants
FINITE = "objective BETWEEN -1.7e308 AND 1.7e308"  # NULL (NaN) and ±inf left out


def stamp(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """What changed since the last look, cheaply: the newest row of each growing table (by
    primary key) and the run's row (its heartbeat too). Equal stamps: nothing to push."""
    run = conn.execute(
        "SELECT id, state, heartbeat_at, stop_requested, ended_at FROM runs ORDER BY id DESC "
        "LIMIT 1"
    ).fetchone()
    tops = conn.execute(
        "SELECT (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM trials), "
        "(SELECT MAX(id) FROM cycles), (SELECT MAX(id) FROM notes), (SELECT MAX(id) FROM todos)"
    ).fetchone()
    return (*tuple(tops), *(tuple(run) if run else ()))


def run_row(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The latest run with its options (worker, hours…) and its deadline."""
    row = conn.execute(
        "SELECT id, started_at, heartbeat_at, deadline_at, options FROM runs ORDER BY id DESC "
        "LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["options"] = json.loads(row["options"] or "{}")
    return out


def running(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The running trials (index on status), oldest first."""
    rows = conn.execute(
        "SELECT id, kind, params, seed, started_at, hypothesis, dimension, confirms FROM trials "
        "WHERE status = 'running' ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


def recent(conn: sqlite3.Connection, limit: int = 15) -> list[dict[str, Any]]:
    """The last finished trials, newest first (by id: the primary key, no scan)."""
    rows = conn.execute(
        "SELECT id, kind, status, verdict, objective, wall_s, dimension, hypothesis, reason "
        "FROM trials WHERE status != 'running' ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(r) for r in rows]


def trial(conn: sqlite3.Connection, trial_id: int) -> dict[str, Any] | None:
    """One trial's row, its judgement, and the params of the base it was measured against."""
    row = conn.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
    if row is None:
        return None
    out = dict(row)
    for key in ("params", "metrics", "judgement"):
        out[key] = json.loads(row[key]) if row[key] else None
    base = None
    if row["base_trial_id"] is not None:
        b = conn.execute(
            "SELECT params FROM trials WHERE id = ?", (row["base_trial_id"],)
        ).fetchone()
        base = json.loads(b["params"]) if b else None
    out["base_params"] = base
    return out


def trial_events(conn: sqlite3.Connection, trial_id: int, limit: int = 200) -> list[dict]:
    rows = conn.execute(
        "SELECT id, ts, kind, data FROM events WHERE trial_id = ? ORDER BY id LIMIT ?",
        (trial_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def story_page(conn: sqlite3.Connection, page: int, size: int = 100) -> tuple[list[dict], int]:
    """Storyline lines, newest first, one page of them; with the number of lines in all."""
    total = conn.execute("SELECT COUNT(*) FROM cycles WHERE summary IS NOT NULL").fetchone()[0]
    rows = conn.execute(
        "SELECT id, started_at, summary FROM cycles WHERE summary IS NOT NULL "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        (size, max(page, 0) * size),
    ).fetchall()
    return [dict(r) for r in rows], total


def todos(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Open TODOs first, then the latest resolved ones."""
    rows = conn.execute(
        "SELECT id, created_at, author, text, resolved_at FROM todos "
        "ORDER BY resolved_at IS NOT NULL, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(r) for r in rows]


def notes(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The latest workpad and mentor notes, newest first."""
    rows = conn.execute(
        "SELECT id, ts, author, section, text FROM notes ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [dict(r) for r in rows]


def _steps(conn: sqlite3.Connection) -> list[tuple[int, float, float | None]]:
    """(trial id, estimate, sd) of each base in turn: the baseline, then every kept trial."""
    steps = []
    first = conn.execute(
        "SELECT id FROM trials WHERE kind = 'baseline' AND status = 'succeeded' ORDER BY id "
        "LIMIT 1"
    ).fetchone()
    kept = [r[0] for r in conn.execute(
        "SELECT id FROM trials WHERE verdict = 'kept' ORDER BY judged_at, id LIMIT 500"
    )]  # fmt: skip
    for n, tid in enumerate(([first[0]] if first else []) + kept):
        if n == 0 and first:
            runs = candidate_runs(conn, tid)  # the baseline's repeats and their confirmations
        else:  # by the primary key and the index on `confirms` (candidate_runs scans `kind`)
            runs = conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM trials WHERE (id = ? OR confirms = ?) "
                "AND kind != 'test' AND status != 'running' ORDER BY id",
                (tid, tid),
            ).fetchall()
        fig = estimate(runs)
        value = fig["confirmed_mean"] if fig["confirmed_mean"] is not None else fig["selection"]
        if value is not None and math.isfinite(value):
            steps.append((tid, value, fig["sd"]))
    return steps


def scatter(conn: sqlite3.Connection, limit: int = SCATTER_POINTS) -> dict[str, Any]:
    """The scatter of every finished trial's objective by trial id, for uPlot: columns `x`,
    `y` (the objective), `best` (the base in force at that trial) and its band (`lo`, `hi`:
    best ± its sd). Past `limit` trials each id bucket gives its min and max (`aggregated`)."""
    where = f"status != 'running' AND kind != 'test' AND {FINITE}"
    n, low, high = conn.execute(f"SELECT COUNT(*), MIN(id), MAX(id) FROM trials WHERE {where}") \
        .fetchone()  # fmt: skip
    if not n:
        return {"x": [], "y": [], "best": [], "lo": [], "hi": [], "n": 0, "aggregated": False}
    if n <= limit:
        pts = [(r[0], r[1]) for r in conn.execute(
            f"SELECT id, objective FROM trials WHERE {where} ORDER BY id")]  # fmt: skip
    else:
        # SQLite gives a bare column the row of its MIN()/MAX(): each bucket's extremes
        width = max(1, math.ceil((high - low + 1) / (limit // 2)))
        found: set[tuple[int, float]] = set()
        for agg in ("MIN", "MAX"):
            found.update((r[0], r[1]) for r in conn.execute(
                f"SELECT id, {agg}(objective) FROM trials WHERE {where} GROUP BY (id - ?) / ?",
                (low, width),
            ))  # fmt: skip
        pts = sorted(found)
    steps = _steps(conn)
    ids = [s[0] for s in steps]
    x, y, best, lo_band, hi_band = [], [], [], [], []
    for tid, value in pts:
        x.append(tid)
        y.append(value)
        at = bisect.bisect_right(ids, tid) - 1
        if at < 0:
            best.append(None), lo_band.append(None), hi_band.append(None)
            continue
        _, b, sd = steps[at]
        best.append(b)
        lo_band.append(b - (sd or 0.0))
        hi_band.append(b + (sd or 0.0))
    return {"x": x, "y": y, "best": best, "lo": lo_band, "hi": hi_band, "n": n,
            "aggregated": n > limit}  # fmt: skip
