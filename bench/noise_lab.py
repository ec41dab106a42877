"""The noise lab of issue 14: does the ratchet keep noise?

One categorical switch helps (`switch = "on"`: +0.05); two other knobs (`x`, `y`) do nothing
at all; every run adds Gaussian noise of σ = 0.01, drawn from the night, the seed and the
parameters (a new seed or any other parameter gives other noise, as in real training). A
night is 30 trials of the `search` worker (3 baseline repeats, then Optuna's TPE), then
finish-up gives the top 3 candidates 3 confirmation rounds.

    .venv/bin/python bench/noise_lab.py [--nights 20] [--jobs 2] [--ratchet "k = v; k = v"]

prints one line per night and the totals the issue asks for: noise changes kept (at most 1
in 20 nights), nights that kept the real improvement (at least 19 of 20), nights whose final
pick's confirmed mean is within 1σ of the truth (at least 18, errors of both signs), and the
ratchet's confirmation cost as a share of the night's trial-seconds (at most 25%).
tests/nights/test_noise_lab.py runs the same 20 nights and asserts those figures.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import typer

SIGMA, GAIN, TRUTH = 0.01, 0.05, 0.90

TRAIN = """
import json, os, random
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = os.environ["NIGHTLAB_SEED"]
rng = random.Random(f"{NIGHT}:{seed}:" + json.dumps(p, sort_keys=True))
truth = TRUTH + (GAIN if p["switch"] == "on" else 0.0)
print(f"score={truth + rng.gauss(0.0, SIGMA)}")
"""

TOML = """
[lab]
name = "noise-{night}"
brief = "IDEA.md"

[objective]
metric = "score"
direction = "maximize"

[trial]
command = "python train.py"
budget_seconds = 60
editable = ["train.py"]
seed = {seed}
sandbox = "none"

[search.switch]
choices = ["off", "on"]
default = "off"

[search.x]
low = 0.0
high = 1.0
default = 0.5

[search.y]
low = 1
high = 8
default = 4

[budget]
max_trials = 30
{ratchet}
[agents]
worker = "search"

[report]
auto = false

[tracking]
enabled = false  # the ratchet is measured here, not MLflow: its mirror would share the CPU
"""


def truth(params: dict) -> float:
    return TRUTH + (GAIN if params.get("switch") == "on" else 0.0)


def build(path: Path, night: int, ratchet: str = "") -> Path:
    path.mkdir(parents=True)
    body = f"NIGHT, TRUTH, GAIN, SIGMA = {night}, {TRUTH}, {GAIN}, {SIGMA}\n" + TRAIN
    (path / "train.py").write_text(body)
    (path / "IDEA.md").write_text("Maximise score.\n")
    extra = f"\n[ratchet]\n{ratchet}\n" if ratchet else ""
    (path / "nightlab.toml").write_text(TOML.format(night=night, seed=night * 100, ratchet=extra))
    (path / ".gitignore").write_text(".nightlab/\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "noise lab"], cwd=path, check=True)
    return path


@dataclass
class NightResult:
    night: int
    noise_keeps: int
    real_kept: bool
    pick_error: float  # the final pick's confirmed mean minus its truth
    pick_n: int
    confirm_share: float  # ratchet confirmation runs' trial-seconds / all trial-seconds
    screened: int
    not_confirmed: int
    trials: int


def run_night(root: Path, night: int, nightlab: str, ratchet: str = "") -> NightResult:
    lab = build(root / f"night-{night}", night, ratchet)
    done = subprocess.run(
        [nightlab, "run", str(lab), "--run-hours", "1", "--finishup-minutes", "30",
         "--final-rounds", "3", "--top-k", "3"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"night {night} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return measure(lab, night)


def measure(lab: Path, night: int) -> NightResult:
    from nightlab.config import load_config
    from nightlab.report import candidates, data

    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    conn.row_factory = sqlite3.Row
    rows = {r["id"]: r for r in conn.execute("SELECT * FROM trials ORDER BY id")}
    conn.close()
    params = {i: json.loads(r["params"]) for i, r in rows.items()}
    noise_keeps, confirm_runs = 0, set()
    for i, r in rows.items():
        judgement = json.loads(r["judgement"]) if r["judgement"] else {}
        if judgement.get("stage") == "confirm":  # its runs, and the best's beside them
            confirm_runs |= set(judgement.get("runs", [])) | set(judgement.get("best_runs", []))
        if r["verdict"] == "kept":
            base = judgement["best_trial"]
            noise_keeps += truth(params[i]) <= truth(params[base])
    walls = {i: r["wall_s"] or 0.0 for i, r in rows.items()}
    cfg = load_config(lab)
    loaded = data.load(lab, cfg)
    ranked = candidates.rank(loaded, candidates.group(loaded))
    pick = candidates.final_pick(loaded, ranked)
    verdicts = [r["verdict"] for r in rows.values()]
    return NightResult(
        night=night,
        noise_keeps=noise_keeps,
        real_kept=truth(pick.first["params"]) > TRUTH,
        pick_error=pick.mean - truth(pick.first["params"]),
        pick_n=pick.n,
        confirm_share=sum(walls[i] for i in confirm_runs) / sum(walls.values()),
        screened=sum(v in ("kept", "not_confirmed", "screened") for v in verdicts),
        not_confirmed=verdicts.count("not_confirmed"),
        trials=len(rows),
    )


def run_nights(
    nights: int, jobs: int = 2, root: Path | None = None, ratchet: str = ""
) -> list[NightResult]:
    """`nights` nights, `jobs` at a time; `ratchet`: lines for [ratchet] (the defaults if
    empty), e.g. "screen_multiplier = 1.5"."""
    nightlab = str(Path(sys.executable).with_name("nightlab"))
    with tempfile.TemporaryDirectory(prefix="nightlab-noise-") as tmp:
        where = root or Path(tmp)
        with ThreadPoolExecutor(jobs) as pool:
            return list(pool.map(lambda n: run_night(where, n, nightlab, ratchet),
                                 range(1, nights + 1)))  # fmt: skip


def summary(results: list[NightResult]) -> dict[str, float]:
    errors = [r.pick_error for r in results]
    return {
        "nights": len(results),
        "noise_keeps": sum(r.noise_keeps for r in results),
        "real_kept": sum(r.real_kept for r in results),
        "within_1_sigma": sum(abs(e) <= SIGMA for e in errors),
        "errors_above": sum(e > 0 for e in errors),
        "errors_below": sum(e < 0 for e in errors),
        "median_error": statistics.median(errors),
        "max_confirm_share": max(r.confirm_share for r in results),
        "mean_confirm_share": statistics.fmean(r.confirm_share for r in results),
        "false_keeps_avoided": sum(r.not_confirmed for r in results),
    }


def main(
    nights: int = typer.Option(20, min=1, help="How many nights (seeds 1..N)."),
    jobs: int = typer.Option(2, min=1, help="Nights at once."),
    ratchet: str = typer.Option("", help='\\[ratchet] settings, e.g. "confirm_runs = 3; ..."'),
) -> None:
    """Run the noise lab's nights and print what the ratchet kept."""
    results = run_nights(nights, jobs, ratchet=ratchet.replace(";", "\n"))
    for r in results:
        print(f"night {r.night:2d}: trials {r.trials}, screened {r.screened}, "
              f"not confirmed {r.not_confirmed}, noise keeps {r.noise_keeps}, real kept "
              f"{r.real_kept}, pick error {r.pick_error:+.4f} (n={r.pick_n}), confirmation "
              f"{100 * r.confirm_share:.0f}% of trial-seconds")  # fmt: skip
    for key, value in summary(results).items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    typer.run(main)
