"""The leaderboard ranked in SQL (`nightlab.store.ranking`) gives exactly what ranking every
trial in Python gave, on a store full of the awkward cases."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nightlab.ratchet import sign
from nightlab.store import ranking, read
from nightlab.store.db import Store


def reference(db: Path, direction: str, top: int | None) -> list[dict[str, Any]]:
    """The leaderboard as it was ranked before: every finished trial read, grouped by its
    candidate in Python."""
    with read.connect(db) as conn:
        baseline = read._baseline_ids(conn)
        rows = conn.execute(
            "SELECT id, kind, status, verdict, objective, params, seed, dimension, hypothesis, "
            "wall_s, [commit], base_commit, mlflow_run_id, confirms FROM trials "
            "WHERE status != 'running' AND kind != 'test' ORDER BY id"
        ).fetchall()
        spent = {t: (tok, usd) for t, tok, usd in conn.execute(
            "SELECT trial_id, SUM(json_extract(data, '$.input_tokens') "
            "+ json_extract(data, '$.output_tokens')), SUM(json_extract(data, '$.usd')) "
            "FROM events WHERE kind = 'agent_usage' AND trial_id IS NOT NULL GROUP BY trial_id"
        )}  # fmt: skip
    groups: dict[int, list[sqlite3.Row]] = {}
    for r in rows:
        groups.setdefault(read._key(r, baseline), []).append(r)
    items = []
    for key, runs in groups.items():
        head = next((r for r in runs if r["id"] == key), runs[0])
        figures = read.estimate(runs)
        value = figures["confirmed_mean"]
        confirmed = value is not None
        if not confirmed:
            value = figures["selection"]
        if value is None:
            continue
        used = [spent.get(r["id"], (None, None)) for r in runs]
        items.append({
            "trial": head["id"], "kind": head["kind"],
            "verdict": "baseline" if head["kind"] == "baseline" else head["verdict"],
            "objective": value, "confirmed": confirmed, **figures,
            "runs": [r["id"] for r in runs if read._scored(r)],
            "seeds": sorted({r["seed"] for r in runs if read._scored(r)}),
            "params": json.loads(head["params"]), "seed": head["seed"],
            "dimension": head["dimension"], "hypothesis": head["hypothesis"],
            "wall_s": head["wall_s"], "commit": head["commit"],
            "base_commit": head["base_commit"], "mlflow_run_id": head["mlflow_run_id"],
            "tokens": sum(t for t, _ in used if t) or None,
            "usd": sum(u for _, u in used if u) or None,
        })  # fmt: skip
    s = sign(direction)
    items.sort(key=lambda i: (not i["confirmed"], -s * i["objective"], i["trial"]))
    for rank, item in enumerate(items, 1):
        item["rank"] = rank
    return items if top is None else items[:top]


def awkward_store(path: Path, seed: int, n: int = 400) -> Path:
    """Baseline repeats (one failed), worker trials (failed, running, inf, NaN, tied
    objectives), confirmation runs (all failed for some, running for some, of the
    baseline too), test runs and agent usage events."""
    rng = random.Random(seed)
    store = Store(path)
    store.migrate()
    store.close()
    trials, events, screened = [], [], []
    for i in range(1, n + 1):
        kind, confirms = "trial", None
        if i <= 4:
            kind = "baseline"
        elif screened and rng.random() < 0.3:
            kind, confirms = "confirm", rng.choice(screened)
        elif rng.random() < 0.03:
            kind, confirms = "confirm", rng.randint(1, 3)  # a baseline repeat's confirmation
        elif rng.random() < 0.02:
            kind = "test"
        status = rng.choice(["succeeded"] * 6 + ["failed", "timeout", "killed", "running"])
        objective = rng.choice([round(rng.gauss(0, 1), 1), rng.gauss(0, 1), float("inf"),
                                float("-inf"), None, 0.5])  # fmt: skip
        if i == 2:
            status = "failed"
        if kind == "trial" and rng.random() < 0.1:
            screened.append(i)
        verdict = {"baseline": "baseline", "confirm": "confirmation", "test": "test"}.get(
            kind, rng.choice(["discarded", "kept", "screened", "not_confirmed"])
        )
        trials.append((i, kind, status, verdict, None if status != "succeeded" else objective,
                       json.dumps({"x": i % 7}), i, confirms))  # fmt: skip
        if rng.random() < 0.2:
            events.append((i, json.dumps({"input_tokens": 10, "output_tokens": i, "usd": 0.5})))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO runs (id, lab, pid, host, state, started_at, heartbeat_at, "
                     "stop_requested, options) VALUES (1, 'l', 1, 'h', 'finished', 0, 0, 0, '{}')")
        conn.executemany("INSERT INTO cycles (id, run_id, trace_id, started_at) "
                         "VALUES (?, 1, ?, 0)", [(t[0], f"c{t[0]}") for t in trials])
        conn.executemany("INSERT INTO decisions (id, cycle_id, worker, action, accepted, reasons, "
                         "body) VALUES (?, ?, 'w', 'run', 1, '[]', '{}')",
                         [(t[0], t[0]) for t in trials])  # fmt: skip
        conn.executemany(
            "INSERT INTO trials (id, run_id, cycle_id, decision_id, kind, status, verdict, "
            "objective, params, seed, slot, [commit], base_commit, hypothesis, started_at, "
            "metrics, confirms) "
            "VALUES (?1, 1, ?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'c', 'b', 'h', 0, '{}', ?8)",
            trials,
        )
        conn.executemany("INSERT INTO events (ts, trial_id, kind, data) "
                         "VALUES (0, ?, 'agent_usage', ?)", events)  # fmt: skip
    return path


@pytest.mark.parametrize("seed", range(6))
def test_the_sql_ranking_matches_ranking_every_trial(tmp_path, seed):
    db = awkward_store(tmp_path / "state.db", seed)
    for direction in ("maximize", "minimize"):
        for top in (1, 5, 40, None):
            got = ranking.leaderboard(db, direction, top)
            assert got == reference(db, direction, top), (direction, top)
    assert any(i["confirmed"] for i in got) and any(not i["confirmed"] for i in got)
