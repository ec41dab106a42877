"""The store's read queries beyond the views of `nightlab.store.read`: what the report, the
finish-up request and the loop ask of `.nightlab/state.db`.

Every function takes a connection from `read.connect` (stdlib sqlite3, read-only) and
returns plain data, JSON columns decoded. No SQL is written outside `nightlab.store`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from nightlab.store.kinds import INTERRUPTED_SQL


def decode(value: Any, default: Any) -> Any:
    """A JSON column's value decoded; `default` when it is NULL or not JSON."""
    if value is None:
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts (whatever the connection's row factory)."""
    cur = conn.execute(sql, args)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# meta and runs ------------------------------------------------------------------------
def meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """Every named fact of the lab (`meta` table), decoded (a value that is not JSON as is)."""
    return {r["key"]: decode(r["value"], r["value"]) for r in _rows(conn, "SELECT * FROM meta")}


def meta_value(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    """One meta value, decoded; `default` when the key is absent (or its value is NULL)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else decode(row[0], default)


def night_started(conn: sqlite3.Connection) -> float | None:
    """When the night's first run started (None before any run)."""
    return conn.execute("SELECT MIN(started_at) FROM runs").fetchone()[0]


def runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every run (loop invocation), oldest first."""
    out = _rows(conn, "SELECT * FROM runs ORDER BY id")
    for r in out:
        r["options"] = decode(r["options"], {})
    return out


def cycles(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every cycle, oldest first."""
    return _rows(conn, "SELECT * FROM cycles ORDER BY id")


def decisions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every decision with its cycle's `trace_id` and start (`ts`), oldest first."""
    out = _rows(
        conn,
        "SELECT d.*, c.trace_id, c.started_at AS ts FROM decisions d "
        "JOIN cycles c ON c.id = d.cycle_id ORDER BY d.id",
    )
    for d in out:
        d["accepted"] = bool(d["accepted"])
        d["reasons"] = decode(d["reasons"], [])
        d["body"] = decode(d["body"], {})
    return out


def trials(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every trial with its cycle's `trace_id`, in id order."""
    out = _rows(
        conn,
        "SELECT t.*, c.trace_id FROM trials t LEFT JOIN cycles c ON c.id = t.cycle_id "
        "ORDER BY t.id",
    )
    for t in out:
        t["params"] = decode(t["params"], {})
        t["metrics"] = decode(t["metrics"], {})
        t["judgement"] = decode(t.get("judgement"), None)
    return out


def events(conn: sqlite3.Connection, kinds: Iterable[str]) -> list[dict[str, Any]]:
    """The events of these kinds, oldest first (`data` decoded)."""
    wanted = list(kinds)
    marks = ", ".join("?" * len(wanted)) or "NULL"
    out = _rows(
        conn,
        "SELECT id, ts, kind, trial_id, cycle_trace_id, data FROM events "
        f"WHERE kind IN ({marks}) ORDER BY id",
        *wanted,
    )
    for e in out:
        e["data"] = decode(e["data"], {})
    return out


# what the loop asks -------------------------------------------------------------------
def last_finished_trials(conn: sqlite3.Connection, n: int) -> list[tuple[str, str | None]]:
    """(status, verdict) of the last `n` worker trials (kind `trial`) to finish, newest
    first: whether the night is stalled."""
    rows = conn.execute(
        "SELECT status, verdict FROM trials WHERE kind='trial' AND status != 'running' "
        "ORDER BY ended_at DESC LIMIT ?",
        (n,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_runs(conn: sqlite3.Connection) -> list[int]:
    """Ids of the night's held-out test runs (kind `test`), running or ended, however they
    ended: finish-up starts one only while there is none (the test data is read once)."""
    return [r[0] for r in conn.execute("SELECT id FROM trials WHERE kind='test' ORDER BY id")]


def trial_kind(conn: sqlite3.Connection, trial_id: int) -> str | None:
    """The kind of trial `trial_id` (None when the store has no such trial)."""
    row = conn.execute("SELECT kind FROM trials WHERE id = ?", (int(trial_id),)).fetchone()
    return None if row is None else row[0]


def settled_trial_ids(conn: sqlite3.Connection) -> list[int]:
    """Ids of every trial that is no longer running (its result.json is due)."""
    return [r[0] for r in conn.execute("SELECT id FROM trials WHERE status != 'running'")]


def judged_on_confirmation(conn: sqlite3.Connection) -> dict[int, str]:
    """Trials judged on their confirmation runs, with their verdict: their result.json was
    first written with the screen's (`screened`) and is written again once judged."""
    return dict(conn.execute(
        "SELECT id, verdict FROM trials WHERE json_extract(judgement, '$.stage') = 'confirm'"
    ))  # fmt: skip


def first_of_candidate(conn: sqlite3.Connection, trial_id: int) -> int | None:
    """The first trial (test runs aside) with the same code and parameters as `trial_id`:
    the trial that names its candidate. None when `trial_id` does not exist."""
    row = conn.execute(
        "SELECT t.id FROM trials t, trials me WHERE me.id = ? AND t.kind != 'test' "
        "AND t.[commit] = me.[commit] AND t.params = me.params ORDER BY t.id LIMIT 1",
        (trial_id,),
    ).fetchone()
    return None if row is None else row[0]


def recent_trial_seconds(conn: sqlite3.Connection, n: int = 10) -> list[float]:
    """The wall-clock seconds of the last `n` succeeded trials, newest first."""
    rows = conn.execute(
        "SELECT wall_s FROM trials WHERE status='succeeded' AND wall_s IS NOT NULL "
        "ORDER BY id DESC LIMIT ?",
        (n,),
    )
    return [r[0] for r in rows]


def ran_with_params(conn: sqlite3.Connection, params: dict[str, Any]) -> list[tuple[int, str]]:
    """(id, commit) of the trials that ran with exactly these parameters (normalised as
    recorded), leaving out those interrupted by nightlab itself: they may run again."""
    return [(trial, commit) for trial, commit, _ in trials_with_params(conn, params)]


def trials_with_params(
    conn: sqlite3.Connection, params: dict[str, Any]
) -> list[tuple[int, str, str]]:
    """(id, commit, status) of the trials that ran or are running (status `running`) with
    exactly these parameters, leaving out those interrupted by nightlab itself."""
    rows = conn.execute(
        f"SELECT id, [commit], status FROM trials WHERE params = ? AND NOT {INTERRUPTED_SQL}",
        (json.dumps(params),),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def in_flight(conn: sqlite3.Connection, ids: Iterable[int]) -> list[dict[str, Any]]:
    """What the worker is told of the trials running now: id, kind, hypothesis, params,
    commit and base_commit, in id order."""
    wanted = sorted(ids)
    marks = ", ".join("?" * len(wanted)) or "NULL"
    out = _rows(
        conn,
        "SELECT id, kind, hypothesis, params, [commit], base_commit FROM trials "
        f"WHERE id IN ({marks}) ORDER BY id",
        *wanted,
    )
    for t in out:
        t["params"] = decode(t["params"], {})
    return out


def papers(conn: sqlite3.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The cached papers known by any of `ids` (`arxiv:…`, `doi:…`, …), by the id asked;
    {} for a store without the literature cache (before migration 0007)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        for asked in dict.fromkeys(ids):
            row = conn.execute(
                "SELECT p.data FROM paper_ids i JOIN papers p ON p.key = i.key WHERE i.id = ?",
                (asked,),
            ).fetchone()
            if row is not None and isinstance(data := decode(row[0], None), dict):
                out[asked] = data
    except sqlite3.OperationalError:
        return {}
    return out
