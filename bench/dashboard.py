"""The dashboard on a big lab: the overview page and its JSON, the delay from a record in
the store to the browser's server-sent event, and the dashboard process's memory
(bench.py's rows; also alone: `python bench/dashboard.py --trials 100000`).

A real `nightlab dashboard --read-only` process serves a store filled by scale.py. The SSE
delay: a client holds the overview's event stream open, a trial's event row is written to
the store (as the loop's journal would), and the time until the next `overview` event
arrives is measured, 10 times.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import scale  # bench/ is on sys.path when this script runs

Row = tuple[str, str, str, str]
OVERVIEW_TARGET_S, SSE_TARGET_S, RSS_TARGET_MB = 0.300, 1.0, 150.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("location")
    finally:
        conn.close()


def _serve(lab: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [scale.NIGHTLAB, "dashboard", str(lab), "--port", str(port), "--read-only"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            _get(port, "/")
            return proc
        except OSError:
            if proc.poll() is not None:
                said = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"dashboard did not start: {said}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("dashboard did not answer within 60 s")


def _sse_delays(port: int, page: str, db: Path, n: int) -> list[float]:
    """Seconds from an event row written to the store to the next `overview` event."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", page.rstrip("/") + "/events", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()

    def next_event() -> None:
        while True:
            line = resp.fp.readline()
            if not line:
                raise SystemExit("the event stream ended")
            if line.startswith(b"event: overview"):
                return

    next_event()  # the first push, on connect
    out = []
    with closing(sqlite3.connect(db)) as store:
        for i in range(n):
            time.sleep(0.7)  # between two polls, like any record
            t0 = time.perf_counter()
            with store:
                store.execute(
                    "INSERT INTO events (ts, run_id, trial_id, kind, data) VALUES (?,1,1,?,?)",
                    (time.time(), "bench_mark", f'{{"i": {i}}}'),
                )
            next_event()
            out.append(time.perf_counter() - t0)
    conn.close()
    return out


def rows(root: Path, trials: int = 100_000, reps: int = 10) -> list[Row]:
    import psutil

    lab = root / f"dash-{trials}"
    subprocess.run([scale.NIGHTLAB, "init", str(lab)], check=True, capture_output=True)
    db = lab / ".nightlab" / "state.db"
    scale.fill_store(db, trials)
    port = _port()
    proc = _serve(lab, port)
    try:
        status, _, where = _get(port, "/")
        page = where if status in (302, 303, 307) and where else "/"
        overview = scale.timed(lambda: _get(port, page), reps)
        api = scale.timed(lambda: _get(port, page.rstrip("/") + "/api/overview"), reps)
        delays = _sse_delays(port, page, db, reps)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    med, api_med, sse = map(statistics.median, (overview, api, delays))
    k = f"{trials // 1000}k"
    return [
        (f"dashboard overview page, {k} trials (median)", scale.ms(med), "≤ 300 ms",
         "PASS" if med <= OVERVIEW_TARGET_S else "FAIL"),
        (f"  its JSON (api/overview), {k} trials", scale.ms(api_med), "—", "—"),
        (f"dashboard SSE: a record → the browser's event, {k} trials (median, max)",
         f"{sse * 1000:.0f} ms (max {max(delays) * 1000:.0f} ms)", "≤ 1 s",
         "PASS" if sse <= SSE_TARGET_S else "FAIL"),
        (f"dashboard process RSS after those, {k} trials", f"{rss:.0f} MB", "≤ 150 MB",
         "PASS" if rss <= RSS_TARGET_MB else "FAIL"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightlab-dash-bench-") as tmp:
        for row in rows(Path(tmp), args.trials):
            print(" | ".join(row))


if __name__ == "__main__":
    sys.exit(main())
