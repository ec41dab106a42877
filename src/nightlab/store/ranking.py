"""The leaderboard, ranked in SQL: a lab of 100,000 trials answers `leaderboard --json
--top 10` without loading its trials into Python.

Most candidates are one worker trial alone (a single run: its figure is its own
objective); SQLite ranks those through the objective index and hands over only the first
`top`. The few with more than one run — the baseline with its repeats, a trial with its
confirmation runs — are read whole and figured as `read.estimate` does.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from nightlab.store import read

_COLUMNS = (
    "id, kind, status, verdict, objective, params, seed, dimension, hypothesis, wall_s, "
    "[commit], base_commit, mlflow_run_id, confirms"
)
# a worker trial with no run pointing at it (its confirmation runs, running or not)
_ALONE = (
    "+kind = 'trial' AND confirms IS NULL "
    "AND id NOT IN (SELECT confirms FROM trials WHERE confirms IS NOT NULL)"
)
# every run that belongs to a candidate of several runs (or may: a confirmation run)
_GROUPED = (
    "id IN (SELECT id FROM trials WHERE kind IN ('baseline', 'confirm') "
    "UNION SELECT id FROM trials WHERE confirms IS NOT NULL "
    "UNION SELECT confirms FROM trials WHERE confirms IS NOT NULL)"
)
_FINITE = "objective > -9e999 AND objective < 9e999"  # 9e999 is inf to SQLite; NaN is NULL


def leaderboard(db: Path, direction: str, top: int | None = 10) -> list[dict[str, Any]]:
    """Candidates — a trial with its confirmation runs, the baseline with its repeats —
    ranked by what is proven: those with runs on new seeds first, by their confirmed mean;
    then the single runs (`confirmed` false), by their one value. `objective` is the figure
    ranked by; `selection` the run that proposed the candidate, left out of its mean."""
    from nightlab.ratchet import sign  # (see read.current_best)

    s = sign(direction)
    with read.connect(db) as conn:
        baseline = read._baseline_ids(conn)
        grouped = conn.execute(
            f"SELECT {_COLUMNS} FROM trials WHERE {_GROUPED} AND status != 'running' "
            "AND kind != 'test' ORDER BY id"
        ).fetchall()
        groups: dict[int, list[sqlite3.Row]] = {}
        for r in grouped:
            groups.setdefault(read._key(r, baseline), []).append(r)
        items = [i for key, runs in groups.items() if (i := _item(key, runs)) is not None]
        order = "DESC" if s > 0 else "ASC"
        limit = "" if top is None else f" LIMIT {int(top)}"
        alone = conn.execute(
            f"SELECT {_COLUMNS} FROM trials INDEXED BY ix_trials_objective "
            f"WHERE status = 'succeeded' AND {_ALONE} "
            f"AND {_FINITE} ORDER BY objective {order}, id{limit}"
        ).fetchall()
        items += [i for r in alone if (i := _item(r["id"], [r])) is not None]
        items.sort(key=lambda i: (not i["confirmed"], -s * i["objective"], i["trial"]))
        items = items if top is None else items[: int(top)]
        _add_usage(conn, items)
    for rank, item in enumerate(items, 1):
        item["rank"] = rank
    return items


def _item(key: int, runs: list[sqlite3.Row]) -> dict[str, Any] | None:
    """One candidate's row of the board (None when none of its runs has a figure)."""
    head = next((r for r in runs if r["id"] == key), runs[0])
    figures = read.estimate(runs)
    value = figures["confirmed_mean"]
    confirmed = value is not None
    if not confirmed:
        value = figures["selection"]
    if value is None:
        return None  # nothing succeeded: not a candidate with a figure
    scored = [r for r in runs if read._scored(r)]
    return {
        "trial": head["id"], "kind": head["kind"],
        "verdict": "baseline" if head["kind"] == "baseline" else head["verdict"],
        "objective": value, "confirmed": confirmed, **figures,
        "runs": [r["id"] for r in scored], "seeds": sorted({r["seed"] for r in scored}),
        "params": json.loads(head["params"]), "seed": head["seed"],
        "dimension": head["dimension"], "hypothesis": head["hypothesis"],
        "wall_s": head["wall_s"], "commit": head["commit"],
        "base_commit": head["base_commit"], "mlflow_run_id": head["mlflow_run_id"],
        "tokens": None, "usd": None, "_ids": [r["id"] for r in runs],
    }  # fmt: skip


def _add_usage(conn: sqlite3.Connection, items: list[dict[str, Any]]) -> None:
    """Each shown candidate's agent tokens and dollars, summed over its runs."""
    ids = sorted({t for i in items for t in i["_ids"]})
    spent: dict[int, tuple[Any, Any]] = {}
    for chunk in (ids[k : k + 500] for k in range(0, len(ids), 500)):
        marks = ",".join("?" * len(chunk))
        spent.update({t: (tok, usd) for t, tok, usd in conn.execute(
            "SELECT trial_id, SUM(json_extract(data, '$.input_tokens') "
            "+ json_extract(data, '$.output_tokens')), SUM(json_extract(data, '$.usd')) "
            f"FROM events WHERE kind = 'agent_usage' AND trial_id IN ({marks}) GROUP BY trial_id",
            chunk,
        )})  # fmt: skip
    for item in items:
        used = [spent.get(t, (None, None)) for t in item.pop("_ids")]
        item["tokens"] = sum(t for t, _ in used if t) or None
        item["usd"] = sum(u for _, u in used if u) or None
