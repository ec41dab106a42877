"""What pruning (`[pruning]`, status `pruned`) did in a night, for the report and the
dashboard: the compute the pruned trials used against their budget, an estimate of what
stopping them saved, and their partial objective curves against the baseline envelope.

Bounded reads only: a limited number of trials, the end of each metrics.jsonl (files.tail),
non-finite points dropped. A trial's files are hostile input; nothing here trusts them.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from nightlab.store import files
from nightlab.store.paths import METRICS

SAMPLE = 1000  # the succeeded worker trials (newest first) whose median wall_s is "a full run"
MAX_LISTED = 200  # pruned trials listed (the counts cover every one)
MAX_BASELINES = 50  # baseline curves in the envelope
CURVE_BYTES = 4 << 20  # the end of a metrics.jsonl read for a curve
MAX_POINTS = 5000  # points of one curve
RECORD_KEYS = ("step", "value", "best", "reference", "rule", "kind", "curves", "baseline_curves")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def record(raw: Any) -> dict[str, Any]:
    """A pruned trial's `pruning` column as a dict of its known keys (numbers finite or
    None, text as text); {} when it is not a JSON object."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key in RECORD_KEYS:
        v = raw.get(key)
        if isinstance(v, str):
            out[key] = v[:200]
        elif isinstance(v, bool) or v is None:
            out[key] = None
        else:
            out[key] = v if _finite(v) else None
    return out


def figures(conn: sqlite3.Connection, budget_s: float | None) -> dict[str, Any]:
    """The pruned trials' count and trial-seconds (`used_s`), their budget (n × budget_s),
    the median wall_s of succeeded worker trials (the newest SAMPLE of them; `full_s`) and
    the estimate of the compute saved: n × full_s − used_s (None without a full run)."""
    n, used = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN wall_s BETWEEN 0 AND 1e300 THEN wall_s END), 0) "
        "FROM trials WHERE status = 'pruned'"
    ).fetchone()
    out: dict[str, Any] = {"n": n, "used_s": float(used), "budget_s": None, "full_s": None,
                           "full_n": 0, "saved_s": None}  # fmt: skip
    if _finite(budget_s):
        out["budget_s"] = n * float(budget_s)  # type: ignore[arg-type]
    if not n:
        return out
    walls = [r[0] for r in conn.execute(
        "SELECT wall_s FROM trials WHERE status = 'succeeded' AND kind = 'trial' "
        "ORDER BY id DESC LIMIT ?", (SAMPLE,)
    ) if _finite(r[0])]  # fmt: skip
    if walls:
        out["full_s"] = statistics.median(walls)
        out["full_n"] = len(walls)
        out["saved_s"] = n * out["full_s"] - out["used_s"]
    return out


def listed(conn: sqlite3.Connection, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
    """The pruned trials (id order, at most `limit`): id, wall_s, reason, dimension,
    hypothesis and the decoded record."""
    rows = conn.execute(
        "SELECT id, wall_s, reason, dimension, hypothesis, pruning FROM trials "
        "WHERE status = 'pruned' ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [{"id": r[0], "wall_s": r[1] if _finite(r[1]) else None, "reason": r[2],
             "dimension": r[3], "hypothesis": r[4], "record": record(r[5])}
            for r in rows]  # fmt: skip


def baseline_ids(conn: sqlite3.Connection, limit: int = MAX_BASELINES) -> list[int]:
    """The succeeded baseline repeats: the reference curves."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM trials WHERE kind = 'baseline' AND status = 'succeeded' ORDER BY id "
        "LIMIT ?", (limit,)
    )]  # fmt: skip


def curve(trial_dir: Path, metric: str, max_points: int = MAX_POINTS) -> dict[str, list]:
    """The objective's points with a step in `trial_dir`/metrics.jsonl (the end of it, at
    most CURVE_BYTES), by step (the last value of a step wins): {"x": steps, "y": values}.
    Lines that are not a record, non-finite values and steps are left out."""
    by_step: dict[int, float] = {}
    for line in files.tail(trial_dir / METRICS, max_bytes=CURVE_BYTES).splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the cut first line of a long file, or not JSON
        if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
            continue
        step, value = rec.get("step"), rec["metrics"].get(metric)
        if _finite(step) and _finite(value) and abs(step) < 2**53:
            by_step[int(step)] = float(value)
    steps = sorted(by_step)[:max_points]
    return {"x": steps, "y": [by_step[s] for s in steps]}


def envelope(curves: list[dict[str, list]]) -> dict[str, list]:
    """The band of the reference curves by step: min, max and mean over the curves that
    reached that step (`n` of them)."""
    at: dict[int, list[float]] = {}
    for c in curves:
        for x, y in zip(c["x"], c["y"], strict=False):
            at.setdefault(x, []).append(y)
    steps = sorted(at)[:MAX_POINTS]
    return {
        "x": steps,
        "lo": [min(at[s]) for s in steps],
        "hi": [max(at[s]) for s in steps],
        "mean": [sum(at[s]) / len(at[s]) for s in steps],
        "n": [len(at[s]) for s in steps],
    }


def baseline_envelope(conn: sqlite3.Connection, trial_dir: Any, metric: str) -> dict[str, list]:
    """`envelope` of the baseline repeats' curves; `trial_dir(id)` names a trial's folder."""
    return envelope([curve(trial_dir(i), metric) for i in baseline_ids(conn)])
