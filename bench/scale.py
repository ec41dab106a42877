"""A big lab's store: `status --json`, `leaderboard --json --top 10` and one `watch`
refresh on 10,000 and 100,000 trials (bench.py's rows; also alone:
`python bench/scale.py --trials 100000`).

The store has the real schema (`Store.migrate()`), bulk-filled with plain sqlite3
`executemany` in one transaction: 1 run, one cycle, decision and trial per trial and 3
events each; 1% of the trials pass the screen and get 2 confirmation runs (kept or not
confirmed), 8% fail, the first 3 are the baseline repeats.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

BIN = Path(sys.executable).parent
NIGHTLAB = str(BIN / "nightlab")
Row = tuple[str, str, str, str]
STATUS_TARGET_S = 0.150


def fill_store(db: Path, trials: int = 10_000) -> None:
    """A store with the real schema holding `trials` trials (see the module's doc)."""
    from nightlab.store.db import Store

    rng = random.Random(0)
    t0 = time.time() - trials * 60.0
    store = Store(db)
    store.migrate()
    store.close()
    cycles, decisions, rows, events = [], [], [], []
    best, kept = 0.0, None
    for i in range(1, trials + 1):
        start, wall = t0 + i * 60.0, rng.uniform(20, 50)
        trace = f"{i:012x}"
        baseline = i <= 3
        confirm = kept is not None and rng.random() < 0.5 and i > 3
        failed = not baseline and rng.random() < 0.08
        status = rng.choice(["failed", "timeout"]) if failed else "succeeded"
        objective = -abs(rng.gauss(0, 1)) if status == "succeeded" else None
        kind = "baseline" if baseline else "confirm" if confirm else "trial"
        verdict, confirms, judgement = "baseline" if baseline else "discarded", None, None
        if confirm:
            verdict, confirms = "confirmation", kept[0]
            objective = None if objective is None else kept[1] + rng.gauss(0, 0.01)
            kept[2] -= 1
            kept = None if kept[2] == 0 else kept
        elif objective is not None and not baseline and kept is None and rng.random() < 0.01:
            best += 0.01
            objective = best
            verdict = rng.choice(["kept", "kept", "not_confirmed"])
            judgement = json.dumps({"stage": "confirm", "best_trial": 1})
            kept = [i, objective, 2]
        knobs = {"x": rng.uniform(-3, 3), "y": rng.uniform(-3, 3)}
        params = json.dumps(knobs)
        line = f"[{trace}] trial {i} ({kind}) {status} → {verdict}"
        cycles.append((i, 1, trace, start, start + wall, "run", line))
        body = json.dumps({"action": "run", "rationale": "TPE proposal", "params": knobs})
        worker = "baseline" if baseline else "ratchet" if confirm else "search"
        decisions.append((i, i, worker, "run", 1, "[]", body))
        rows.append(
            (i, 1, i, i, kind, status, verdict, params, i if baseline or confirm else 0, 0,
             f"{i:040x}", "0" * 40, None if baseline else 1,
             "these settings beat the current best", "optimization", 1000 + i, start, start,
             start + wall, start + wall, wall, 0 if status == "succeeded" else 1, 50.0,
             objective, None if status == "succeeded" else "exit 1",
             "{}" if objective is None else json.dumps({"score": objective}), None,
             f"{i:032x}", confirms, judgement)
        )  # fmt: skip
        data = json.dumps({"status": status, "params": knobs})
        for k, what in enumerate(("trial_created", "trial_started", "trial_finished")):
            events.append((start + k * wall / 2, 1, trace, i, what, data))
    end = t0 + trials * 60.0
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO runs (id, lab, pid, host, state, started_at, heartbeat_at, ended_at, "
            "deadline_at, stop_requested, end_reason, options) VALUES "
            "(1, 'minimal', 1, 'bench', 'finished', ?, ?, ?, NULL, 0, 'max_trials reached', ?)",
            (t0, end, end, json.dumps({"worker": "search", "max_trials": trials})),
        )
        conn.executemany("INSERT INTO cycles (id, run_id, trace_id, started_at, ended_at, "
                         "action, summary) VALUES (?,?,?,?,?,?,?)", cycles)  # fmt: skip
        conn.executemany("INSERT INTO decisions (id, cycle_id, worker, action, accepted, "
                         "reasons, body) VALUES (?,?,?,?,?,?,?)", decisions)  # fmt: skip
        conn.executemany(
            "INSERT INTO trials (id, run_id, cycle_id, decision_id, kind, status, verdict, "
            "params, seed, slot, [commit], base_commit, base_trial_id, hypothesis, dimension, "
            "pid, pid_started_at, started_at, ended_at, judged_at, wall_s, exit_code, "
            "peak_rss_mb, objective, reason, metrics, log_tail, mlflow_run_id, confirms, "
            "judgement) VALUES (" + ",".join("?" * 30) + ")",
            rows,
        )
        conn.executemany("INSERT INTO events (ts, run_id, cycle_trace_id, trial_id, kind, data) "
                         "VALUES (?,?,?,?,?,?)", events)  # fmt: skip


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(fn: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cli_rows(root: Path, reps: int, trials: int = 10_000) -> list[Row]:
    """status --json, leaderboard --json --top 10 and `watch --once` on a lab of `trials`."""
    lab = root / f"big-{trials}"
    subprocess.run([NIGHTLAB, "init", str(lab)], check=True, capture_output=True)
    t0 = time.perf_counter()
    fill_store(lab / ".nightlab" / "state.db", trials)
    took = time.perf_counter() - t0
    print(f"  filled the {trials:,}-trial store in {took:.1f} s", file=sys.stderr)

    def cli(*args: str) -> Callable[[], str]:
        cmd = [NIGHTLAB, *args]
        return lambda: subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    status = cli("status", str(lab), "--json")
    st = json.loads(status())
    if st["trials"]["total"] != trials:
        raise SystemExit(f"status --json: trials.total = {st['trials']['total']}, not {trials}")
    board = cli("leaderboard", str(lab), "--json", "--top", "10")
    if len(json.loads(board())) != 10:
        raise SystemExit("leaderboard --json --top 10 did not return 10 rows")
    watch = cli("watch", str(lab), "--once")
    n = f"{trials // 1000}k"
    s, b, w = timed(status, reps), timed(board, reps), timed(watch, reps)
    return [
        (f"status --json, {n} trials (median, min)",
         f"{ms(statistics.median(s))} (min {ms(min(s))})", "≤ 150 ms",
         "PASS" if statistics.median(s) <= STATUS_TARGET_S else "FAIL"),
        (f"leaderboard --json --top 10, {n} trials",
         f"{ms(statistics.median(b))} (min {ms(min(b))})", "≤ 150 ms",
         "PASS" if statistics.median(b) <= STATUS_TARGET_S else "FAIL"),
        (f"watch --once (one refresh), {n} trials",
         f"{ms(statistics.median(w))} (min {ms(min(w))})", "—", "—"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightlab-scale-") as tmp:
        for row in cli_rows(Path(tmp), args.reps, args.trials):
            print(" | ".join(row))


if __name__ == "__main__":
    main()
