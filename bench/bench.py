"""nightlab performance benchmarks: loop overhead, `status --json` on a big lab, `--help`.

Run as `.venv/bin/python bench/bench.py [--quick]`. Everything happens in temporary
folders; one table (benchmark, measured, target, verdict) is printed at the end.

1. Loop overhead per trial: a trial that sleeps 0.1 s is run N times directly, then
   N + 3 times by the loop (3 baseline repeats); the overhead is the start-to-start interval
   of consecutive trials (from the store) minus the direct median. Tracking on and off.
2. `nightlab status --json`, `leaderboard --json` and one `watch` refresh on stores holding
   10,000 and 100,000 trials (scale.py).
3. `nightlab --help` start-up time.
4. Slot occupancy with a thinking LLM worker (planning ahead while a trial runs).
5. Trials per hour with 1, 2 and 4 local slots on 2 s sleep trials, as a share of the ideal.
6. Slurm (needs root: scripts/slurm-local.sh starts a local cluster): from a slot freeing to
   the next trial's command running in its job.
9. The dashboard on 100,000 trials: the overview page, a record → its server-sent event,
   the process's RSS (dashboard.py).
8. A coding-agent cycle: what nightlab adds around the agent (context, prompt, collection,
   admission), the agent's own time left out (agent_cycle.py).
7. Output floods: the metric reader on a 300 MB line without a newline and on 2M metric
   lines (in a process of its own): its memory growth and time until it stops ([limits]).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import agent_cycle  # bench/ is on sys.path when this script runs
import dashboard
import scale
from scale import ms, timed  # one copy, in scale.py

BIN = Path(sys.executable).parent
NIGHTLAB = str(BIN / "nightlab")
SKIP = 3 + 2  # baseline repeats, then trials that share the loop's start-up (imports, MLflow)
TRAIN = 'import time\ntime.sleep(0.1)\nprint("score=1.0")\n'
TOML = """[lab]
name = "bench"
brief = "IDEA.md"

[objective]
metric = "score"
direction = "maximize"

[trial]
command = "python train.py"
budget_seconds = 60
editable = ["train.py"]

[search.x]
low = 0.0
high = 1.0
default = 0.5

[agents]
worker = "search"

[tracking]
enabled = {tracking}
"""

Row = tuple[str, str, str, str]


def verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "FAIL"


def make_lab(root: Path, name: str) -> Path:
    """A fresh lab from `nightlab init` (it creates the git repository)."""
    lab = root / name
    subprocess.run([NIGHTLAB, "init", str(lab)], check=True, capture_output=True)
    return lab


# ---------------------------------------------------------------------- 1. loop overhead
def loop_overhead(
    root: Path, n: int, tracking: bool, sandbox: str = "bwrap"
) -> tuple[list[float], float, float]:
    """(per-trial overheads after SKIP, direct median, in-loop wall_s median) in seconds."""
    from nightlab import Lab

    lab = make_lab(root, f"loop-{'on' if tracking else 'off'}-{sandbox}")
    (lab / "train.py").write_text(TRAIN)
    toml = TOML.format(tracking=str(tracking).lower())
    (lab / "nightlab.toml").write_text(
        toml.replace("[trial]\n", f'[trial]\nsandbox = "{sandbox}"\n')
    )

    def direct() -> None:
        subprocess.run([sys.executable, "train.py"], cwd=lab, check=True, capture_output=True)

    direct_median = statistics.median(timed(direct, n))
    Lab(lab).run(max_trials=n + 3, report=lambda line: None)
    with closing(sqlite3.connect(lab / ".nightlab" / "state.db")) as conn:
        rows = conn.execute("SELECT status, started_at, wall_s FROM trials ORDER BY id").fetchall()
    if len(rows) != n + 3 or any(status != "succeeded" for status, _, _ in rows):
        raise SystemExit(f"loop benchmark: expected {n + 3} succeeded trials, got {rows}")
    starts = [r[1] for r in rows[SKIP:]]
    overheads = [b - a - direct_median for a, b in itertools.pairwise(starts)]
    wall_median = statistics.median(r[2] for r in rows[SKIP:])
    return overheads, direct_median, wall_median


# ---------------------------------------------------------------------- 5. slots
def throughput(root: Path, slots: int, per_slot: int, sleep: float = 2.0) -> tuple[float, float]:
    """Trials per hour with `slots` local slots on trials that sleep `sleep` s, as a share of
    the ideal slots·3600/sleep: (after the baseline, the whole night). The baseline repeats
    are a barrier (no proposal before the noise is known), so slots idle while the last one
    runs; the steady state is measured from the first trial after it."""
    from nightlab import Lab

    lab = make_lab(root, f"slots-{slots}")
    (lab / "train.py").write_text(f"import time\ntime.sleep({sleep})\nprint('score=1.0')\n")
    (lab / "nightlab.toml").write_text(TOML.format(tracking="false"))
    n = slots * per_slot
    Lab(lab).run(max_trials=n, slots=slots, report=lambda line: None)
    with closing(sqlite3.connect(lab / ".nightlab" / "state.db")) as conn:
        rows = conn.execute(
            "SELECT kind, started_at, ended_at FROM trials WHERE status='succeeded' ORDER BY id"
        ).fetchall()
    first, last = min(r[1] for r in rows), max(r[2] for r in rows)
    night = len(rows) * sleep / (slots * (last - first))
    # steady state: from the first proposal to the last start, work is always waiting; the
    # sleep done in that window over the slot-time it offered (start-up, barrier and the
    # tail, where slots run out of work under max_trials, left out)
    t0 = min(r[1] for r in rows if r[0] == "trial")
    t1 = max(r[1] for r in rows)
    useful = sum(max(0.0, min(end, t1) - max(start, t0)) for _, start, end in rows)
    walls = [end - start for _, start, end in rows]
    steady = useful / (slots * (t1 - t0)) * sleep / statistics.mean(walls)
    return steady, night


# ---------------------------------------------------------------------- 6. slurm
def slurm_latency(root: Path, n: int = 6) -> list[float] | str:
    """Seconds from a slot freeing (the loop records a trial's end) to the next trial's
    command running in its Slurm job (its wrapper writes `pid`), on a local cluster from
    scripts/slurm-local.sh with one job at a time; or why it could not be measured."""
    from nightlab import Lab

    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm-local.sh"
    cluster = root / "slurm-cluster"
    up = subprocess.run([str(script), "up", str(cluster)], capture_output=True, text=True)
    if up.returncode != 0:
        return f"no local Slurm ({up.stderr.strip().splitlines()[-1:] or up.returncode})"
    os.environ["SLURM_CONF"] = str(cluster / "etc" / "slurm.conf")
    try:
        lab = make_lab(root, "slurm")
        (lab / "train.py").write_text("import time\ntime.sleep(1)\nprint('score=1.0')\n")
        toml = TOML.format(tracking="false") + '\n[executor]\nkind = "slurm"\n'
        (lab / "nightlab.toml").write_text(toml)
        Lab(lab).run(max_trials=n, report=lambda line: None)
        with closing(sqlite3.connect(lab / ".nightlab" / "state.db")) as conn:
            rows = conn.execute("SELECT id, ended_at FROM trials ORDER BY id").fetchall()
        trials = lab / ".nightlab" / "trials"
        return [
            (trials / str(b) / "pid").stat().st_mtime - ended
            for (_, ended), (b, _) in itertools.pairwise(rows)
        ]
    finally:
        subprocess.run([str(script), "down", str(cluster)], capture_output=True)
        os.environ.pop("SLURM_CONF", None)


# ---------------------------------------------------------------------- 4. slot occupancy
THINK_S, TRIAL_S = 0.4, 2.0  # the 2 s worker and 10 s trials, scaled by 1/5


def occupancy(root: Path, n: int) -> tuple[float, float]:
    """(measured, serial) share of the time the slot is busy, with an LLM worker (the real
    pydantic-ai path, a FunctionModel that thinks THINK_S) and trials of TRIAL_S."""
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    from nightlab import Lab
    from nightlab.agents import llm

    def think(messages: list, info: object) -> ModelResponse:
        time.sleep(THINK_S)
        think.n += 1  # type: ignore[attr-defined]
        decision = {
            "action": "run",
            "rationale": f"probe x = {think.n / 1000}",  # type: ignore[attr-defined]
            "params": {"x": think.n / 1000},
        }  # type: ignore[attr-defined]
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, decision)])  # type: ignore[attr-defined]

    think.n = 0  # type: ignore[attr-defined]
    llm.resolve_model = lambda spec, cfg, role="worker": FunctionModel(think)  # bench process only
    lab = make_lab(root, "occupancy")
    (lab / "train.py").write_text(f"import time\ntime.sleep({TRIAL_S})\nprint('score=1.0')\n")
    toml = TOML.format(tracking="false").replace('worker = "search"', 'worker = "function:t"')
    (lab / "nightlab.toml").write_text(toml)
    Lab(lab).run(max_trials=n + 3, report=lambda line: None)
    with closing(sqlite3.connect(lab / ".nightlab" / "state.db")) as conn:
        rows = conn.execute(
            "SELECT started_at, ended_at FROM trials WHERE kind='trial' ORDER BY id"
        ).fetchall()
    busy = sum(end - start for start, end in rows)
    return busy / (rows[-1][1] - rows[0][0]), TRIAL_S / (TRIAL_S + THINK_S)


# ---------------------------------------------------------------------- 7. output floods
FLOOD = """
import resource, sys, time
from pathlib import Path
from nightlab.trials.metrics import MetricReader
root = Path(sys.argv[1])
(root / "line").mkdir(); (root / "lines").mkdir()
with open(root / "line" / "stdout.log", "wb") as fh:
    for _ in range(300):
        fh.write(b"x" * 2**20)
with open(root / "lines" / "stdout.log", "wb") as fh:
    fh.writelines(b"step=%d loss=0.5 score=0.25\\n" % i for i in range(2_000_000))
before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
for name in ("line", "lines"):
    reader = MetricReader(root / name, "score")
    while reader.flood is None and (reader.read() or reader.grew):
        pass
    assert reader.flood, name
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, time.perf_counter() - t0)
"""


def flood(root: Path) -> tuple[float, float]:
    """(MB the reader's process grew by, seconds) reading two floods to their limit."""
    folder = root / "flood"
    folder.mkdir()
    out = subprocess.run([sys.executable, "-c", FLOOD, str(folder)], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return int(out[0]) / 1024, float(out[1])


def main() -> None:
    unknown = [a for a in sys.argv[1:] if a != "--quick"]
    if unknown:
        raise SystemExit(f"usage: bench.py [--quick]   (unknown: {' '.join(unknown)})")
    n, reps = (15 if "--quick" in sys.argv else 40), 10
    print(f"date     {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine  {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"python   {platform.python_version()} ({sys.executable})")
    print(f"loop     N = {n} trials (+3 baseline), first {SKIP} skipped", flush=True)

    table: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="nightlab-bench-") as tmp:
        root = Path(tmp)
        for tracking in (True, False):
            label = "MLflow on" if tracking else "MLflow off"
            print(f"  loop overhead, {label} …", file=sys.stderr, flush=True)
            over, direct, wall = loop_overhead(root, n, tracking)
            med = statistics.median(over)
            p90 = statistics.quantiles(over, n=10)[-1]
            table.append(
                (f"loop overhead / trial ({label})", f"{ms(med)} (p90 {ms(p90)})", "≤ 26 ms",
                 verdict(med, 0.026))
            )  # fmt: skip
            table.append(
                (f"  cross-check: in-loop wall_s vs direct ({label})",
                 f"{ms(wall)} vs {ms(direct)} ({(wall - direct) * 1000:+.1f} ms)", "—", "—")
            )  # fmt: skip
        print("  loop overhead, MLflow off, no sandbox …", file=sys.stderr, flush=True)
        over, _, _ = loop_overhead(root, n, False, sandbox="none")
        table.append(("loop overhead / trial (MLflow off, sandbox none)",
                      f"{ms(statistics.median(over))}", "—", "—"))  # fmt: skip
        for slots in (1, 2, 4):
            print(f"  throughput with {slots} slot(s) …", file=sys.stderr, flush=True)
            steady, night = throughput(root, slots, 6)  # (fewer: no steady state on 1 slot)
            table.append((f"trials/hour, {slots} local slot(s), 2 s trials (share of ideal)",
                          f"{steady:.1%} (whole night with baseline {night:.1%})", "≥ 95%",
                          verdict(-steady, -0.95)))  # fmt: skip
        print("  slot occupancy with a thinking LLM worker …", file=sys.stderr, flush=True)
        busy, serial = occupancy(root, 6 if "--quick" in sys.argv else 10)
        table.append(
            (
                f"slot busy (worker {THINK_S:g} s, trials {TRIAL_S:g} s; serial {serial:.0%})",
                f"{busy:.1%}",
                "≥ 97%",
                verdict(-busy, -0.97),
            )
        )
        print("  Slurm: slot freed → next job running …", file=sys.stderr, flush=True)
        gaps = slurm_latency(root)
        if isinstance(gaps, str):
            table.append(("Slurm: slot freed → next trial running", gaps, "≤ 2 s", "—"))
        else:
            table.append(("Slurm: slot freed → next trial running (median, max)",
                          f"{statistics.median(gaps):.2f} s (max {max(gaps):.2f} s)", "≤ 2 s",
                          verdict(statistics.median(gaps), 2.0)))  # fmt: skip
        print("  output floods …", file=sys.stderr, flush=True)
        grown, secs = flood(root)
        table.append(("metric reader: 300 MB line, 2M metric lines (memory grown, time)",
                      f"+{grown:.0f} MB, {secs:.2f} s", "≤ 150 MB",
                      verdict(grown, 150)))  # fmt: skip
        print("  coding-agent cycle overhead …", file=sys.stderr, flush=True)
        table += agent_cycle.rows(root, 8 if "--quick" in sys.argv else 20)
        for trials in (10_000, 100_000):
            print(f"  status / leaderboard / watch on {trials:,} trials …", file=sys.stderr,
                  flush=True)  # fmt: skip
            table += scale.cli_rows(root, reps, trials)
        print("  the dashboard on 100,000 trials …", file=sys.stderr, flush=True)
        table += dashboard.rows(root, 100_000, reps)
        helps = timed(lambda: subprocess.run([NIGHTLAB, "--help"], capture_output=True), reps)
        table.append(("nightlab --help (median)", ms(statistics.median(helps)), "≤ 0.5 s",
                      verdict(statistics.median(helps), 0.5)))  # fmt: skip

    from rich.console import Console
    from rich.table import Table

    out = Table("benchmark", "measured", "target", "verdict", title="nightlab benchmarks")
    for row in table:
        out.add_row(*row)
    Console(width=120).print(out)


if __name__ == "__main__":
    main()
