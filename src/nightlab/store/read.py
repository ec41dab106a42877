"""Read-only views of the state database through the standard library's sqlite3.

`nightlab status --json` must answer in well under 150 ms on a lab with 10,000 trials;
importing SQLAlchemy alone costs ~0.45 s on a small machine, so views read the schema that
the SQLAlchemy models and Alembic migrations own with plain SQL. Writes never happen here.
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlab.store.files import held_by
from nightlab.store.kinds import FAILED

if TYPE_CHECKING:
    from nightlab.ratchet import Best

STALE_AFTER_S = 30.0  # a heartbeat older than this: the loop is gone or wedged


def connect(db: Path) -> sqlite3.Connection:
    """Open `db` read-only (raises FileNotFoundError naming it when the lab never ran)."""
    if not Path(db).is_file():
        raise FileNotFoundError(f"{db} does not exist: this lab has not run yet (`nightlab run`)")
    # as_uri() percent-encodes '#', '?' and '%' that a lab's path may contain
    conn = sqlite3.connect(Path(db).resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def baseline(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """Mean and spread of the succeeded baseline repeats, or None before the first."""
    rows = conn.execute(
        "SELECT id, objective, params, [commit] FROM trials "
        "WHERE kind='baseline' AND status='succeeded' ORDER BY id"
    ).fetchall()
    if not rows:
        return None
    values = [r["objective"] for r in rows]
    return {
        "trial": rows[0]["id"],
        "trials": [r["id"] for r in rows],
        "objective": statistics.fmean(values),
        "sigma": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "params": json.loads(rows[0]["params"]),
        "commit": rows[0]["commit"],
    }


def best(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The current base: the last kept trial (each one beat its predecessor), else baseline."""
    row = conn.execute(
        "SELECT id, objective, params, [commit] FROM trials WHERE verdict='kept' "
        "ORDER BY judged_at DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        return {
            "trial": row["id"],
            "objective": row["objective"],
            "params": json.loads(row["params"]),
            "commit": row["commit"],
        }
    base = baseline(conn)
    if base is None:
        return None
    return {k: base[k] for k in ("trial", "objective", "params", "commit")}


def current_best(conn: sqlite3.Connection) -> Best | None:
    """`best` as the ratchet's `Best` (None before the first baseline repeat succeeded)."""
    from nightlab.ratchet import Best  # (dataclasses: an import `status --json` need not pay)

    b = best(conn)
    if b is None:
        return None
    return Best(b["objective"], b["trial"], b["commit"], b["params"])


def run_state(run: sqlite3.Row | None, now: float, state_dir: Path) -> str:
    if run is None:
        return "new"
    if run["state"] != "running":
        return run["state"]
    if run["host"] == socket.gethostname():  # the lab's lock tells, whatever the heartbeat
        return "running" if held_by(state_dir) is not None else "crashed"
    fresh = now - run["heartbeat_at"] < STALE_AFTER_S
    return "running" if fresh else "crashed"  # another machine: the heartbeat must tell


def status(db: Path, lab_name: str) -> dict[str, Any]:
    """The `status --json` object; state "new" until the first run has created the schema."""
    out: dict[str, Any] = {
        "lab": lab_name, "state": "new", "pid": None, "host": None, "run": None,
        "heartbeat_age_s": None, "started_at": None, "ended_at": None, "end_reason": None,
        "stop_requested": False, "cycles": 0,
        "trials": {"total": 0, "succeeded": 0, "failed": 0, "running": 0, "kept": 0,
                   "by_status": {}},
        "baseline": None, "best": None, "last_story": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "requests": 0, "usd": None},
    }  # fmt: skip
    now = time.time()
    try:
        with connect(db) as conn:
            run = conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))
            kept = conn.execute("SELECT COUNT(*) FROM trials WHERE verdict='kept'").fetchone()
            cycles = conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
            last = conn.execute(
                "SELECT summary FROM cycles WHERE summary IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            base, top = baseline(conn), best(conn)
            spent = usage(conn)
    except FileNotFoundError:
        return out
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return out  # a first loop is creating the schema right now
    if run is not None:
        out.update(
            pid=run["pid"], host=run["host"], run=run["id"],
            heartbeat_age_s=round(now - run["heartbeat_at"], 3),
            started_at=run["started_at"], ended_at=run["ended_at"],
            end_reason=run["end_reason"], stop_requested=bool(run["stop_requested"]),
        )  # fmt: skip
    out.update(
        state=run_state(run, now, Path(db).parent),
        cycles=cycles,
        trials={
            "total": sum(counts.values()),
            "succeeded": counts.get("succeeded", 0),
            "failed": sum(counts.get(s, 0) for s in FAILED),
            "running": counts.get("running", 0),
            "kept": kept[0],
            "by_status": counts,
        },
        baseline=None
        if base is None
        else {k: base[k] for k in ("trials", "objective", "sigma", "n")},
        best=top,
        last_story=last["summary"] if last else None,
        usage=spent,
    )
    return out


def leaderboard(db: Path, direction: str, top: int | None = 10) -> list[dict[str, Any]]:
    """Succeeded trials, best objective first, with what was tried."""
    from nightlab.ratchet import sign  # (see current_best)

    order = "DESC" if sign(direction) > 0 else "ASC"  # best first
    limit = "" if top is None else f" LIMIT {int(top)}"
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT id, kind, verdict, objective, params, seed, dimension, hypothesis, wall_s, "
            "[commit], base_commit, mlflow_run_id FROM trials WHERE status='succeeded' "
            "AND kind != 'test' "
            f"AND objective IS NOT NULL ORDER BY objective {order}, id{limit}"
        ).fetchall()
        ids = ",".join(str(r["id"]) for r in rows) or "0"
        spent = {t: (tok, usd) for t, tok, usd in conn.execute(
            "SELECT trial_id, SUM(json_extract(data, '$.input_tokens') "
            "+ json_extract(data, '$.output_tokens')), SUM(json_extract(data, '$.usd')) "
            f"FROM events WHERE kind = 'agent_usage' AND trial_id IN ({ids}) GROUP BY trial_id"
        )}  # fmt: skip
    out = []
    for rank, r in enumerate(rows, 1):
        item = dict(r)
        item["rank"] = rank
        item["trial"] = item.pop("id")
        item["params"] = json.loads(item["params"])
        item["tokens"], item["usd"] = spent.get(item["trial"], (None, None))
        if item["objective"] is not None and not math.isfinite(item["objective"]):
            item["objective"] = None
        out.append(item)
    return out


def storyline(db: Path, last: int | None = None) -> list[str]:
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT summary FROM cycles WHERE summary IS NOT NULL ORDER BY id DESC"
            + ("" if last is None else f" LIMIT {int(last)}")
        ).fetchall()
    return [r[0] for r in reversed(rows)]


def last_trial(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The most recently finished trial (its log tail is kept only when it failed)."""
    row = conn.execute(
        "SELECT id, status, reason, objective, log_tail FROM trials "
        "WHERE status != 'running' ORDER BY ended_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else dict(row)


def todo_focus(conn: sqlite3.Connection) -> dict[str, Any]:
    """The open TODO count with the oldest and newest open items (one if they are the same)."""
    rows = conn.execute(
        "SELECT id, author, text FROM todos WHERE resolved_at IS NULL ORDER BY id"
    ).fetchall()
    focus = [dict(r) for r in (rows[:1] + rows[-1:])] if rows else []
    if len(focus) == 2 and focus[0]["id"] == focus[1]["id"]:
        focus = focus[:1]
    return {"open": len(rows), "focus": focus}


def workpad_tail(conn: sqlite3.Connection, chars: int = 1500, mentor: bool = False) -> str:
    """The latest workpad (or mentor) notes, newest last, within `chars`."""
    out: list[str] = []
    size = 0
    for section, text in conn.execute(
        "SELECT section, text FROM notes WHERE (section = 'mentor') = ? ORDER BY id DESC LIMIT 20",
        (mentor,),
    ):
        line = f"- ({section}) {text}"[: chars - size]  # a long note is cut, not dropped
        out.append(line)
        size += len(line)
        if size >= chars:
            break
    return "\n".join(reversed(out))


def usage(conn: sqlite3.Connection) -> dict[str, Any]:
    """What the agents used so far in this lab: tokens, requests and dollars."""
    row = conn.execute(
        "SELECT COALESCE(SUM(json_extract(data, '$.input_tokens')), 0), "
        "COALESCE(SUM(json_extract(data, '$.output_tokens')), 0), "
        "COALESCE(SUM(json_extract(data, '$.requests')), 0), "
        "SUM(json_extract(data, '$.usd')) FROM events WHERE kind = 'agent_usage'"
    ).fetchone()
    return {
        "input_tokens": row[0],
        "output_tokens": row[1],
        "requests": row[2],
        "usd": None if row[3] is None else round(row[3], 6),
    }


def recent_cycles(conn: sqlite3.Connection, n: int) -> list[dict[str, Any]]:
    """The last `n` worker decisions (newest first): action, whether the gate accepted it,
    its dimension, and the verdict of the trial it started (if any)."""
    rows = conn.execute(
        "SELECT d.action, d.accepted, json_extract(d.body, '$.dimension') AS dimension, "
        "t.status, t.verdict FROM decisions d LEFT JOIN trials t ON t.decision_id = d.id "
        "WHERE d.worker NOT IN ('baseline', 'mentor', 'finish-up') ORDER BY d.id DESC LIMIT ?",
        (n,),
    ).fetchall()
    return [dict(r) for r in rows]
