"""Read-only views of the state database through the standard library's sqlite3 (the
leaderboard: `nightlab.store.ranking`).

`nightlab status --json` must answer in well under 150 ms on a lab with 100,000 trials;
importing SQLAlchemy alone costs ~0.45 s on a small machine, so views read the schema that
the SQLAlchemy models and Alembic migrations own with plain SQL. Writes never happen here.
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlab.ratchet import finite
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
    from nightlab.ratchet import mean, spread  # (see current_best)

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
        "objective": mean(values),
        "sigma": _json_safe(spread(values)) if len(values) > 1 else 0.0,
        "n": len(values),
        "params": json.loads(rows[0]["params"]),
        "commit": rows[0]["commit"],
    }


def _key(row: sqlite3.Row, baseline: list[int]) -> int:
    """The candidate a run belongs to, named by its first trial: the first baseline repeat
    for the baseline's runs (and those confirming any of them), else the trial it confirms,
    else the trial itself."""
    if baseline and (row["kind"] == "baseline" or row["confirms"] in baseline):
        return baseline[0]
    return row["confirms"] if row["confirms"] is not None else row["id"]


def _baseline_ids(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM trials WHERE kind='baseline' ORDER BY id")]


def _scored(row: sqlite3.Row) -> bool:
    return row["status"] == "succeeded" and finite(row["objective"])


def estimate(runs: list[sqlite3.Row]) -> dict[str, Any]:
    """One candidate's figures from its runs (id order): the selection run that proposed it
    (None for the baseline), and the mean, sd and number of its other succeeded runs."""
    from nightlab.ratchet import mean, split_runs, spread  # (see current_best)

    selection, values = split_runs([(r["kind"], r["objective"]) for r in runs if _scored(r)])
    return {
        "selection": selection,
        "confirmed_mean": mean(values) if values else None,
        "sd": _json_safe(spread(values)) if len(values) > 1 else None,
        "n": len(values),
    }


def _json_safe(value: float) -> float | None:
    """A figure for JSON: None where it is not finite (JSON has no inf)."""
    return value if math.isfinite(value) else None


_CANDIDATE_COLUMNS = "id, kind, status, objective, confirms, seed, reason"


def candidate_runs(
    conn: sqlite3.Connection, trial_id: int, running: bool = False
) -> list[sqlite3.Row]:
    """Every finished run (with `running`, every run) of the candidate `trial_id` belongs
    to (test runs aside)."""
    baseline = _baseline_ids(conn)
    if trial_id in baseline:
        marks = ",".join("?" * len(baseline))
        where, args = f"kind='baseline' OR confirms IN ({marks})", tuple(baseline)
    else:
        where, args = "id = ? OR confirms = ?", (trial_id, trial_id)
    ended = "" if running else " AND status != 'running'"
    return conn.execute(
        f"SELECT {_CANDIDATE_COLUMNS} FROM trials WHERE ({where}) AND kind != 'test'{ended} "
        "ORDER BY id",
        args,
    ).fetchall()


def noise(conn: sqlite3.Connection, confidence: float) -> Any:
    """The ratchet's `Noise`: pooled over every candidate that ran more than once (selection
    runs left out: they were picked for being high)."""
    from nightlab.ratchet import pooled, split_runs  # (see current_best)

    baseline = _baseline_ids(conn)
    groups: dict[int, list[tuple[str, float]]] = {}
    for r in conn.execute(
        f"SELECT {_CANDIDATE_COLUMNS} FROM trials WHERE status='succeeded' AND kind != 'test' "
        "ORDER BY id"
    ):
        if finite(r["objective"]):
            groups.setdefault(_key(r, baseline), []).append((r["kind"], r["objective"]))
    return pooled([split_runs(runs)[1] for runs in groups.values()], confidence)


def challengers(conn: sqlite3.Connection, best_trial: int, judged: bool = False) -> int:
    """How many candidates passed the screen against this best (with `judged`: have been
    judged on their confirmation runs against it)."""
    stage = "= 'confirm'" if judged else "IN ('screen', 'confirm')"
    return conn.execute(
        f"SELECT COUNT(*) FROM trials WHERE verdict IN ('screened', 'kept', 'not_confirmed') "
        f"AND json_extract(judgement, '$.stage') {stage} "
        "AND json_extract(judgement, '$.best_trial') = ?",
        (best_trial,),
    ).fetchone()[0]


def best(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The current base: the last kept trial (each one beat its predecessor), else the
    baseline; `objective` is its estimate (the confirmed mean; a single run while it has
    none), with `confirmed_mean`, `sd`, `n` and its `selection` run."""
    row = conn.execute(
        "SELECT id, params, [commit] FROM trials WHERE verdict='kept' "
        "ORDER BY judged_at DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id, params, [commit] FROM trials WHERE kind='baseline' AND status='succeeded' "
            "ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        runs = candidate_runs(conn, row["id"])
    else:
        runs = candidate_runs(conn, row["id"])
    figures = estimate(runs)
    value = figures["confirmed_mean"]
    if value is None:
        value = figures["selection"]
    if value is None:
        return None
    return {"trial": row["id"], "objective": value, "params": json.loads(row["params"]),
            "commit": row["commit"], **figures}  # fmt: skip


def current_best(conn: sqlite3.Connection) -> Best | None:
    """`best` as the ratchet's `Best` (None before the first baseline repeat succeeded)."""
    from nightlab.ratchet import Best  # (dataclasses: an import `status --json` need not pay)

    b = best(conn)
    if b is None:
        return None
    return Best(b["objective"], b["trial"], b["commit"], b["params"], max(b["n"], 1), b["sd"])


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
        "trials": {"total": 0, "succeeded": 0, "failed": 0, "pruned": 0, "running": 0,
                   "kept": 0, "screened": 0, "not_confirmed": 0, "by_status": {}},
        "baseline": None, "best": None, "last_story": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "requests": 0, "usd": None},
    }  # fmt: skip
    now = time.time()
    try:
        with connect(db) as conn:
            run = conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))
            verdicts = dict(conn.execute(
                "SELECT verdict, COUNT(*) FROM trials WHERE verdict IS NOT NULL GROUP BY verdict"
            ))  # fmt: skip
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
            "pruned": counts.get("pruned", 0),  # stopped early by [pruning]: not a failure
            "running": counts.get("running", 0),
            "kept": verdicts.get("kept", 0),
            "screened": verdicts.get("screened", 0),  # confirmation runs still due
            "not_confirmed": verdicts.get("not_confirmed", 0),
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


def storyline(db: Path, last: int | None = None, held_out: bool = True) -> list[str]:
    """The cycles' lines, oldest first (the last `last`); without `held_out`, not the lines
    of the held-out test runs' cycles (what an agent reads)."""
    tests = "" if held_out else " AND id NOT IN (SELECT cycle_id FROM trials WHERE kind='test')"
    with connect(db) as conn:
        rows = conn.execute(
            f"SELECT summary FROM cycles WHERE summary IS NOT NULL{tests} ORDER BY id DESC"
            + ("" if last is None else f" LIMIT {int(last)}")
        ).fetchall()
    return [r[0] for r in reversed(rows)]


def last_trial(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The most recently finished trial (its log tail is kept only when it failed), as the
    worker reads it: never the held-out test run."""
    row = conn.execute(
        "SELECT id, status, reason, objective, log_tail FROM trials "
        "WHERE status != 'running' AND kind != 'test' ORDER BY ended_at DESC, id DESC LIMIT 1"
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
        "WHERE d.worker NOT IN ('baseline', 'mentor', 'finish-up', 'ratchet') "
        "ORDER BY d.id DESC LIMIT ?",
        (n,),
    ).fetchall()
    return [dict(r) for r in rows]
