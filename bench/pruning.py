"""Pruning on live curves (issue: [pruning]): does `kind = "median"` save trial-seconds
without losing the best?

The lab: a trial prints `step=N loss=…` for 20 steps, PAUSE seconds apart. Its curve falls
from 2.5 towards a plateau set by five knobs: `lr` (log, 1e-4…1, best near 0.03; too high
settles high; below 0.003 it is also slow), `width` (16…512, log: wider settles a little
lower), `wd` (log, 1e-6…0.1, best near 1e-4), `dropout` (0…0.5, best near 0.1) and `act`
(relu/gelu/tanh: a small offset). The defaults are a sensible start (lr 0.01, width 128). A
run's offset (σ 0.005) and each step's jitter (σ 0.01) are drawn from the seed, the
parameters and the step, so the would-be final value of a pruned trial is known exactly
(`curve` below is train.py's own formula; the script checks it against every finished run).
Bad settings show from the first steps: near the optimum the speed does not depend on the
knobs, so the order at step 2 is the final order but for the jitter.

Each of N seeds (`[trial] seed`, which also seeds the search worker's sampler) runs two
nights of the same `max_trials` (3 baseline repeats, then TPE), one with `[pruning] kind =
"median"` and one with `kind = "none"`; `[ratchet] confirm_runs = 0` (keep on one run), so
every trial is a baseline repeat or a worker trial and both arms run the same trials count.
Measured from the store: trial-seconds = the sum of `wall_s` over all trials; best = the
lowest objective among the succeeded trials; a pruned trial "would have been best" when its
would-be final value beats its night's best. Latency: the trial appends each step's
wall-clock time after its line is flushed and, on SIGTERM, the time it arrived; the latency is
the SIGTERM's arrival minus the time of the line of the step the pruner condemned (the
`pruning` record's step).

    .venv/bin/python bench/pruning.py [--seeds 5] [--trials 30] [--jobs 1]

Exits 1, with FAIL lines, when a criterion is missed: a saving of at least 40% (median over
seeds), a median best with pruning at least as good, no pruned would-be best, and a pruning
latency of at most 100 ms at p90.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import typer

STEPS, PAUSE = 20, 0.05

# the lab's formula, shared by train.py and this script (the would-be final values)
CURVE = """
import json, math, random
LR_BEST, WD_BEST, START = 0.03, 1e-4, 2.5
ACT = {"relu": 0.0, "gelu": -0.02, "tanh": 0.06}

def curve(p, seed, step):
    d = math.log10(p["lr"] / LR_BEST)
    w = math.log10(p["wd"] / WD_BEST)
    plateau = (0.1 + 0.25 * d * d + 0.04 * math.log2(512 / p["width"]) + ACT[p["act"]]
               + 0.03 * w * w + 0.5 * (p["dropout"] - 0.1) ** 2)
    rate = 0.3 * min(1.0, (10 * p["lr"] / LR_BEST) ** 0.5)  # lr < 0.003: slow as well
    key = json.dumps(p, sort_keys=True)
    offset = random.Random(f"{seed}:{key}").gauss(0.0, 0.005)
    jitter = random.Random(f"{seed}:{key}:{step}").gauss(0.0, 0.01)
    return plateau + (START - plateau) * math.exp(-rate * (step + 1)) + offset + jitter
"""

TRAIN = """
import os, signal, sys, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
out = os.path.dirname(os.environ["NIGHTLAB_PARAMS"])
clock = open(os.path.join(out, "clock.jsonl"), "a")

def on_term(signum, frame):
    clock.write(json.dumps({"term": time.time()}) + "\\n")
    clock.close()
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
for step in range(STEPS):
    time.sleep(PAUSE)  # the work of one step
    print(f"step={step} loss={curve(p, seed, step):.6f}", flush=True)
    clock.write(json.dumps({"step": step, "t": time.time()}) + "\\n")
    clock.flush()
"""

TOML = """
[lab]
name = "pruning-{arm}-{seed}"
brief = "IDEA.md"

[objective]
metric = "loss"
direction = "minimize"

[trial]
command = "python train.py"
budget_seconds = 60
editable = ["train.py"]
seed = {seed}
sandbox = "none"

[search]
sampler = "tpe"

[search.lr]
low = 0.0001
high = 1.0
log = true
default = 0.01

[search.width]
low = 16
high = 512
log = true
default = 128

[search.wd]
low = 0.000001
high = 0.1
log = true
default = 0.0001

[search.dropout]
low = 0.0
high = 0.5
default = 0.1

[search.act]
choices = ["relu", "gelu", "tanh"]
default = "relu"

[budget]
max_trials = {trials}

[ratchet]
confirm_runs = 0

[pruning]
kind = "{arm}"

[agents]
worker = "search"

[report]
auto = false

[tracking]
enabled = false
"""

_ns: dict = {}
exec(CURVE, _ns)  # noqa: S102 - our own formula, the one train.py runs
curve = _ns["curve"]


def build(path: Path, arm: str, seed: int, trials: int) -> Path:
    path.mkdir(parents=True)
    (path / "train.py").write_text(f"STEPS, PAUSE = {STEPS}, {PAUSE}\n" + CURVE + TRAIN)
    (path / "IDEA.md").write_text("Minimise the final loss.\n")
    (path / "nightlab.toml").write_text(TOML.format(arm=arm, seed=seed, trials=trials))
    (path / ".gitignore").write_text(".nightlab/\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "pruning lab"], cwd=path, check=True)
    return path


@dataclass
class Night:
    seed: int
    arm: str
    trials: int
    trial_s: float
    pruned: int
    best: float
    best_id: int
    violations: list[str] = field(default_factory=list)  # pruned trials that would have won
    latencies_ms: list[float] = field(default_factory=list)
    pruned_steps: list[int] = field(default_factory=list)


def run_night(root: Path, arm: str, seed: int, trials: int, nightlab: str) -> Night:
    lab = build(root / f"{arm}-{seed}", arm, seed, trials)
    done = subprocess.run([nightlab, "run", str(lab), "--run-hours", "1"],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{arm} night {seed} failed:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")  # fmt: skip
    return measure(lab, arm, seed)


def measure(lab: Path, arm: str, seed: int) -> Night:
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    conn.row_factory = sqlite3.Row
    rows = list(conn.execute("SELECT * FROM trials ORDER BY id"))
    conn.close()
    done = [r for r in rows if r["status"] == "succeeded" and r["objective"] is not None]
    top = min(done, key=lambda r: r["objective"])
    night = Night(seed=seed, arm=arm, trials=len(rows), best=top["objective"], best_id=top["id"],
                  trial_s=sum(r["wall_s"] or 0.0 for r in rows),
                  pruned=sum(r["status"] == "pruned" for r in rows))  # fmt: skip
    for r in done:  # the formula here is the trial's: its finished runs must agree
        if abs(curve(json.loads(r["params"]), r["seed"], STEPS - 1) - r["objective"]) > 1e-5:
            night.violations.append(f"trial {r['id']}: the formula does not match its run")
    for r in rows:
        if r["status"] != "pruned":
            continue
        record = json.loads(r["pruning"])
        params = json.loads(r["params"])
        would_be = curve(params, r["seed"], STEPS - 1)
        night.pruned_steps.append(record["step"])
        if would_be < night.best:
            night.violations.append(
                f"trial {r['id']} pruned at step {record['step']}: "
                f"would have ended {would_be:.4f} < best {night.best:.4f}"
            )
        clock = lab / ".nightlab" / "trials" / str(r["id"]) / "out" / "clock.jsonl"
        marks = [json.loads(line) for line in clock.read_text().splitlines() if line.strip()]
        printed = {m["step"]: m["t"] for m in marks if "step" in m}
        term = [m["term"] for m in marks if "term" in m]
        if term and record["step"] in printed:
            night.latencies_ms.append(1000 * (term[0] - printed[record["step"]]))
    return night


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main(
    seeds: int = typer.Option(5, min=1, help="How many seeds (each: one night per arm)."),
    trials: int = typer.Option(30, min=5, help="max_trials of every night (3 are baselines)."),
    jobs: int = typer.Option(1, min=1, help="Nights at once (more disturbs the latency)."),
) -> None:
    """Run median-pruned and unpruned nights per seed; print trial-seconds, best, latency."""
    nightlab = str(Path(sys.executable).with_name("nightlab"))
    plan = [(arm, 1000 * s) for s in range(1, seeds + 1) for arm in ("median", "none")]
    with tempfile.TemporaryDirectory(prefix="nightlab-pruning-") as tmp:
        with ThreadPoolExecutor(jobs) as pool:
            nights = list(pool.map(lambda a: run_night(Path(tmp), a[0], a[1], trials, nightlab),
                                   plan))  # fmt: skip
    by = {(n.seed, n.arm): n for n in nights}
    print(f"{'seed':>6} {'arm':>7} {'trials':>6} {'trial-s':>8} {'pruned':>6} {'best':>8} "
          f"{'prune steps':>12}")  # fmt: skip
    savings = []
    for seed in sorted({n.seed for n in nights}):
        med, none = by[seed, "median"], by[seed, "none"]
        for n in (med, none):
            steps = f"{min(n.pruned_steps)}–{max(n.pruned_steps)}" if n.pruned_steps else "—"
            print(f"{seed:>6} {n.arm:>7} {n.trials:>6} {n.trial_s:>8.1f} {n.pruned:>6} "
                  f"{n.best:>8.4f} {steps:>12}")  # fmt: skip
        savings.append(1 - med.trial_s / none.trial_s)
        print(f"{'':>6} {'saving':>7} {'':>6} {100 * savings[-1]:>7.1f}%")
    saving = statistics.median(savings)
    best = {arm: statistics.median(n.best for n in nights if n.arm == arm)
            for arm in ("median", "none")}  # fmt: skip
    violations = [f"seed {n.seed}: {v}" for n in nights for v in n.violations]
    lat = [ms for n in nights for ms in n.latencies_ms]
    same = all(by[s, "median"].trials == by[s, "none"].trials for s in {n.seed for n in nights})
    print(
        f"\nmedian saving of trial-seconds: {100 * saving:.1f}% (target ≥ 40%; per seed "
        f"{', '.join(f'{100 * s:.0f}%' for s in savings)})"
    )
    print(
        f"median best: median {best['median']:.4f}, none {best['none']:.4f} "
        "(lower is better; the pruned arm must be at least as good)"
    )
    print(f"same trials count in both arms: {same}")
    print(f"pruned trials that would have been their night's best: {len(violations)}")
    for v in violations:
        print(f"  {v}")
    if lat:
        print(f"pruning latency (condemning line → SIGTERM in the trial), {len(lat)} kills: "
              f"p50 {pct(lat, 0.5):.0f} ms, p90 {pct(lat, 0.9):.0f} ms, max {max(lat):.0f} ms "
              "(target ≤ 100 ms)")  # fmt: skip
    fails = []
    if saving < 0.40:
        fails.append(f"median saving {100 * saving:.1f}% < 40%")
    if best["median"] > best["none"]:
        fails.append(f"median best with pruning {best['median']:.4f} worse than "
                     f"{best['none']:.4f} without")  # fmt: skip
    if violations:
        fails.append(f"{len(violations)} pruned trial(s) would have been the night's best")
    if not same:
        fails.append("the arms ran different numbers of trials")
    if not lat:
        fails.append("no pruning latency measured (nothing pruned?)")
    elif pct(lat, 0.9) > 100:
        fails.append(f"pruning latency p90 {pct(lat, 0.9):.0f} ms > 100 ms")
    for line in fails:
        print(f"FAIL: {line}")
    if fails:
        raise typer.Exit(1)
    print("PASS")


if __name__ == "__main__":
    typer.run(main)
