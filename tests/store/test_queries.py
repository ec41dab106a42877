"""The store's queries (nightlab.store.queries, read.current_best, Store's writers) answer
what the SQL they replace answered, and the kinds' rules agree with each other."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from nightlab import ratchet
from nightlab.store import kinds, queries, read
from nightlab.store.db import Cycle, Decision, Event, Run, Store, Trial

# (kind, status, verdict, reason, params, commit, wall_s, ended_at)
ROWS = [
    ("baseline", "succeeded", "baseline", None, {"lr": 0.1}, "c0", 2.0, 10.0),
    ("baseline", "succeeded", "baseline", None, {"lr": 0.1}, "c0", 3.0, 11.0),
    ("trial", "succeeded", "kept", None, {"lr": 0.2}, "c1", 4.0, 15.0),
    ("trial", "failed", "discarded", "exit status 1", {"lr": 0.3}, "c2", 1.0, 14.0),
    ("trial", "killed", "discarded", "interrupted: the loop died", {"lr": 0.4}, "c3", None, 16.0),
    ("trial", "timeout", "discarded", "budget: exceeded", {"lr": 0.4}, "c3", 9.0, 17.0),
    ("trial", "killed", "discarded", "Interrupted by hand", {"lr": 0.4}, "c4", None, 18.0),
    ("confirm", "succeeded", "confirmation", None, {"lr": 0.2}, "c1", 5.0, 19.0),
    ("test", "succeeded", "test", None, {"lr": 0.2}, "c1", 6.0, 20.0),
    ("trial", "running", None, None, {"lr": 0.5}, "c5", None, None),
]


@pytest.fixture
def db(tmp_path):
    store = Store(tmp_path / ".nightlab" / "state.db")
    store.migrate()
    with store.tx() as s:
        s.add(Run(id=1, lab="l", pid=1, host="h", state="running", started_at=5.0,
                  heartbeat_at=5.0))  # fmt: skip
        s.add(Run(id=2, lab="l", pid=2, host="h", state="running", started_at=7.0,
                  heartbeat_at=7.0))  # fmt: skip
        s.flush()
        for i, (kind, status, verdict, reason, params, commit, wall, ended) in enumerate(ROWS, 1):
            s.add(Cycle(id=i, run_id=1, trace_id=f"t{i}", started_at=float(i)))
            s.add(Decision(id=i, cycle_id=i, worker="w", action="run", accepted=True,
                           body={"n": i}))  # fmt: skip
            s.flush()
            s.add(Trial(id=i, run_id=1, cycle_id=i, decision_id=i, kind=kind, status=status,
                        verdict=verdict, reason=reason, params=params, seed=i, slot=0,
                        commit=commit, base_commit="c0", started_at=float(i), ended_at=ended,
                        judged_at=ended, wall_s=wall, objective=float(i)))  # fmt: skip
        s.add(Event(ts=1.0, kind="ratchet", trial_id=3, data={"verdict": "kept"}))
        s.add(Event(ts=2.0, kind="other", trial_id=3, data={}))
        Store.set_meta(s, "finishup", {"phase": "active"})
        Store.set_meta(s, "night_id", "n1")
    store.close()
    return store.path


def old(db, sql, *args):
    with closing(sqlite3.connect(db)) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def test_the_loops_queries_answer_as_its_sql(db):
    with closing(read.connect(db)) as conn:
        for n in (1, 3, 6, 20):
            assert queries.last_finished_trials(conn, n) == old(
                db, "SELECT status, verdict FROM trials WHERE kind='trial' AND status != "
                "'running' ORDER BY ended_at DESC LIMIT ?", n)  # fmt: skip
        assert queries.settled_trial_ids(conn) == [
            i for (i,) in old(db, "SELECT id FROM trials WHERE status != 'running'")
        ]
        for trial in range(1, len(ROWS) + 2):
            row = old(db, "SELECT t.id FROM trials t, trials me WHERE me.id = ? AND t.kind != "
                      "'test' AND t.[commit] = me.[commit] AND t.params = me.params ORDER BY "
                      "t.id LIMIT 1", trial)  # fmt: skip
            assert queries.first_of_candidate(conn, trial) == (row[0][0] if row else None)
        assert queries.first_of_candidate(conn, 9) == 3  # the test run names its candidate
        assert queries.recent_trial_seconds(conn) == [
            w for (w,) in old(db, "SELECT wall_s FROM trials WHERE status='succeeded' AND wall_s "
                              "IS NOT NULL ORDER BY id DESC LIMIT 10")  # fmt: skip
        ]
        assert queries.recent_trial_seconds(conn, 2) == [6.0, 5.0]
        twins = ("SELECT id, [commit] FROM trials WHERE params = ? AND NOT (status IN "
                 "('killed', 'timeout') AND reason LIKE 'interrupted%')")  # fmt: skip
        for params in ({"lr": 0.1}, {"lr": 0.2}, {"lr": 9}):
            got = queries.ran_with_params(conn, params)
            assert got == old(db, twins, json.dumps(params))
        # trial 5 was interrupted; the rule is case-sensitive (as startswith), LIKE was not
        assert queries.ran_with_params(conn, {"lr": 0.4}) == [(6, "c3"), (7, "c4")]
        assert old(db, twins, json.dumps({"lr": 0.4})) == [(6, "c3")]
        assert queries.meta_value(conn, "finishup") == {"phase": "active"}
        assert queries.meta_value(conn, "absent", "x") == "x"
        assert queries.night_started(conn) == 5.0


def test_the_reports_queries_decode_the_json_columns(db):
    with closing(read.connect(db)) as conn:
        assert queries.meta(conn) == {"finishup": {"phase": "active"}, "night_id": "n1"}
        assert [r["id"] for r in queries.runs(conn)] == [1, 2]
        assert queries.runs(conn)[0]["options"] == {}
        assert len(queries.cycles(conn)) == len(ROWS)
        d = queries.decisions(conn)[0]
        assert (d["accepted"], d["reasons"], d["body"], d["trace_id"], d["ts"]) == (
            True, [], {"n": 1}, "t1", 1.0)  # fmt: skip
        t = queries.trials(conn)[2]
        assert (t["params"], t["metrics"], t["trace_id"]) == ({"lr": 0.2}, {}, "t3")
        assert [e["kind"] for e in queries.events(conn, ("ratchet", "x"))] == ["ratchet"]
        assert queries.events(conn, ()) == []
        assert queries.events(conn, ["ratchet"])[0]["data"] == {"verdict": "kept"}


def test_current_best_is_the_ratchets_best(db):
    with closing(read.connect(db)) as conn:
        b = read.best(conn)
        best = read.current_best(conn)
    assert best == ratchet.Best(b["objective"], b["trial"], b["commit"], b["params"])
    assert best == ratchet.Best(3.0, 3, "c1", {"lr": 0.2})
    with pytest.raises(AttributeError):
        best.trial = 4  # type: ignore[misc]  (frozen)


def test_store_writers_for_the_front_ends_and_the_mirror(db):
    store = Store(db)
    try:
        store.request_stop(1, now=True, by=42)
        assert [t.id for t, _ in store.unlogged_trials()] == list(range(1, len(ROWS)))
        assert store.unlogged_trials()[0][1] == "t1"
        store.set_mlflow_run(1, "run-a")
    finally:
        store.close()
    assert old(db, "SELECT stop_requested FROM runs ORDER BY id") == [(1,), (0,)]
    assert old(db, "SELECT run_id, json_extract(data, '$.by') FROM events "
               "WHERE kind='stop_requested'") == [(1, 42)]  # fmt: skip
    assert old(db, "SELECT id FROM trials WHERE mlflow_run_id = 'run-a'") == [(1,)]


def test_a_trial_judged_while_the_mirror_logged_it_is_logged_again(db):
    """The mirror logged trial 2 as `screened`; its confirmation judged it meanwhile: the
    run id is not recorded, so the next pass logs the verdict."""
    store = Store(db)
    try:
        (verdict,) = old(db, "SELECT verdict FROM trials WHERE id = 2")[0]
        store.set_mlflow_run(2, "run-b", logged=("screened",))
        (still,) = old(db, "SELECT verdict FROM trials WHERE id = 3")
        store.set_mlflow_run(3, "run-c", logged=tuple(still))
    finally:
        store.close()
    assert verdict != "screened"
    assert old(db, "SELECT id FROM trials WHERE mlflow_run_id IS NOT NULL") == [(3,)]


@pytest.mark.parametrize(
    "status, reason, expected",
    [
        ("killed", "interrupted: stopped by the user", True),
        ("timeout", "interrupted: no slot", True),
        ("killed", "memory: exceeded", False),
        ("killed", None, False),
        ("killed", "Interrupted", False),
        ("failed", "interrupted: x", False),
        ("succeeded", "interrupted", False),
    ],
)
def test_interrupted_in_python_and_sql_agree(status, reason, expected):
    assert kinds.interrupted(status, reason) is expected
    with closing(sqlite3.connect(":memory:")) as conn:
        got = conn.execute(
            f"SELECT {kinds.INTERRUPTED_SQL} FROM (SELECT ? AS status, ? AS reason)",
            (status, reason),
        ).fetchone()[0]
    assert bool(got) is expected


def test_the_kinds_are_the_trials_words():
    from nightlab.trials import local

    assert local.INTERRUPTED is kinds.INTERRUPTED
    assert kinds.KINDS == ("baseline", "trial", "confirm", "test")
    assert set(kinds.FAILED) < set(kinds.STATUSES)
    assert set(kinds.CUT_SHORT) <= set(kinds.FAILED)
    assert "'killed', 'timeout'" in kinds.INTERRUPTED_SQL
    assert f"'{kinds.INTERRUPTED}*'" in kinds.INTERRUPTED_SQL
