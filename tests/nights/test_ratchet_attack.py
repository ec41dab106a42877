"""Attacks on the ratchet (screen → confirm → keep) on whole nights: a trial that prints
values as large as a float allows, the best's re-runs beside a challenger with two slots,
the finish-up window, a loop killed between a verdict and its files (h-attack)."""

from __future__ import annotations

import json

import pytest

from nightlab import Lab

from conftest import rows

pytestmark = pytest.mark.slow

WHY = "boost the score on this seed and see if it holds"

HUGE = """
import json, os
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
mode = p.get("mode", "ok")
if mode == "first_seed_only":  # (the knob's name) the largest float on every seed
    print("score=1e308")
elif mode == "crash":  # (the knob's name) wild on new seeds: deviations² 1.6e308 each
    print("score=1e308" if seed < 1000 else f"score={-9e153 if seed % 2 else 9e153}")
else:
    print(f"score={1.0 + p['boost'] + 0.01 * ((seed * 7) % 3 - 1)}")
"""


def night(make_lab, trial, *params, **options):
    options.setdefault("max_trials", 3 + len(params))
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": p} for p in params],
        trial=trial, modes=("first_seed_only",), confirm_runs=2, **options,
    )  # fmt: skip
    return lab, Lab(lab).run(report=lambda line: None)


def test_a_trial_printing_the_largest_float_on_every_seed_crashes_nothing(make_lab):
    """Its confirmation runs' mean overflowed `statistics.fmean`: the night crashed, and so
    did every restart and `leaderboard` (the lab was bricked)."""
    lab, final = night(make_lab, HUGE, {"boost": 0.0, "mode": "first_seed_only"},
                       {"boost": 0.5})  # fmt: skip
    assert final["state"] == "finished", final
    assert Lab(lab).leaderboard(10)
    assert Lab(lab).status()["best"] is not None
    assert Lab(lab).report().is_dir()


def test_wild_confirmations_leave_a_report_that_can_be_written(make_lab):
    """Two candidates whose confirmation runs' squared deviations sum past the largest
    float: σ became inf, its threshold null, and the report crashed on it."""
    lab, final = night(make_lab, HUGE, {"boost": 0.0, "mode": "crash"},
                       {"boost": 0.1, "mode": "crash"})  # fmt: skip
    assert final["state"] == "finished", final
    for (j,) in rows(lab, "SELECT judgement FROM trials WHERE judgement IS NOT NULL"):
        figures = json.loads(j)
        assert figures.get("threshold") is not None and figures.get("sigma") is not None
    assert Lab(lab).report().is_dir()


SLOW = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
lucky = p.get("mode", "ok") == "ok" or seed < 1000
if seed == p.get("slow_seed", -1):
    time.sleep(4)
time.sleep(p.get("sleep", 0.0) if seed < 1000 else p.get("csleep", 0.0))
gain = p["boost"] if lucky else p.get("cboost", 0.0)  # on new seeds: cboost
print(f"score={1.0 + gain + 0.01 * ((seed * 7) % 3 - 1)}")
"""
KNOBS = """
[search.csleep]
low = 0.0
high = 30.0
default = 0.0

[search.cboost]
low = 0.0
high = 5.0
default = 0.0

[search.slow_seed]
low = -1
high = 5000
default = -1
type = "int"
"""


def two_slots(make_lab, *params, max_trials):
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": p} for p in params],
        trial=SLOW, modes=("first_seed_only",), confirm_runs=2, max_trials=max_trials,
        toml_extra=KNOBS,
    )  # fmt: skip
    final = Lab(lab).run(report=lambda line: None, slots=2)
    t = {r["id"]: dict(zip(r.keys(), r, strict=True)) for r in rows(
        lab, "SELECT id, kind, verdict, confirms, status, judgement FROM trials ORDER BY id")}
    for r in t.values():
        r["judgement"] = json.loads(r["judgement"]) if r["judgement"] else {}
    return final, t


def reruns(t, best):
    """The runs of `best` beyond its own confirmation runs (re-measuring it)."""
    own = set(t[best]["judgement"].get("runs") or ())
    return [i for i, r in t.items() if r["confirms"] == best and i not in own]


def test_a_best_kept_while_a_challenger_confirms_is_measured_again_before_its_verdict(
    make_lab,
):
    """Two slots: A and C pass the screen against the baseline together; A is kept on its
    two runs while C confirms. C was judged against A on A's own two runs, which the
    loop took for re-runs beside C (and recorded as its `best_runs`)."""
    final, t = two_slots(
        make_lab,
        {"boost": 0.5, "sleep": 0.2, "csleep": 1.5},  # A: trial 4
        {"boost": 0.8, "sleep": 1.2, "csleep": 1.5},  # C: trial 5
        max_trials=5,
    )
    a, c = t[4], t[5]
    assert a["verdict"] == "kept" and a["judgement"]["best_trial"] == 1
    assert c["verdict"] == "kept" and c["judgement"]["best_trial"] == 4
    assert c["judgement"]["best_n"] == 3  # A's two runs and one more on a new seed
    assert c["judgement"]["best_runs"] == reruns(t, 4) and len(reruns(t, 4)) == 1
    assert not set(c["judgement"]["best_runs"]) & set(a["judgement"]["runs"])


def test_the_best_is_measured_again_once_not_once_per_challenger(make_lab):
    """The best's re-run beside challenger 8 is slow; challenger 13 passes the screen and
    confirms while it runs (both hold a little on new seeds: 1.51, 1.52 against the best's
    1.505, too little to keep). A second re-run was started beside 13 (it looked only for
    re-runs after itself), and 13 was judged before the first one ended."""
    final, t = two_slots(
        make_lab,
        {"boost": 0.5, "slow_seed": 1002},  # K, kept; its re-run (seed 1002) takes 4 s
        {"boost": 0.0, "sleep": 0.1},
        {"boost": 0.9, "sleep": 0.5, "mode": "first_seed_only", "cboost": 0.51},
        {"boost": 0.0, "sleep": 0.6},
        {"boost": 1.2, "mode": "first_seed_only", "cboost": 0.51},
        max_trials=8,
    )
    assert t[4]["verdict"] == "kept"
    challengers = [r for r in t.values() if r["judgement"].get("best_trial") == 4
                   and r["judgement"].get("stage") == "confirm"]  # fmt: skip
    assert len(challengers) == 2
    assert len(reruns(t, 4)) == 1, reruns(t, 4)
    assert all(r["judgement"]["best_n"] == 3 for r in challengers)


def finish_up_while_confirming(lab, **request):
    """Run the night; ask for the finish-up once a confirmation run is running."""
    import sqlite3
    import threading
    import time

    def ask():
        db = lab / ".nightlab" / "state.db"
        for _ in range(600):
            time.sleep(0.05)
            try:
                with sqlite3.connect(db) as conn:
                    n = conn.execute("SELECT count(*) FROM trials WHERE kind = 'confirm' "
                                     "AND status = 'running'").fetchone()[0]  # fmt: skip
            except sqlite3.Error:
                continue
            if n:
                Lab(lab).finish_up(**request)
                return

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    final = Lab(lab).run(report=lambda line: None)
    asker.join(5)
    return final


@pytest.mark.parametrize("request_", [{"report_now": True}, {"minutes_left": 0.05}])
def test_no_confirmation_run_starts_after_the_finish_up_window(make_lab, request_):
    """Asked for the report now, or a finish-up window of 3 s that one more run of ~4 s
    cannot fit: the second confirmation run started anyway (the ratchet's runs came before
    finish-up's rule that no trial starts which cannot finish before the window ends).
    (A confirmation run lasts 4 s: the loop hears the request within a 2 s heartbeat; the
    baseline and the screen run at once.)"""
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": {"boost": 0.5}}],
        trial=SLOW, modes=("first_seed_only",), confirm_runs=2, max_trials=4,
        toml_extra=KNOBS.replace("default = 0.0", "default = 4.0", 1),
    )  # fmt: skip
    final = finish_up_while_confirming(lab, **request_)
    assert final["end_reason"] == "finish-up complete", final
    confirms = rows(lab, "SELECT id FROM trials WHERE kind = 'confirm'")
    assert len(confirms) == 1  # the one running when it was asked
    assert final["trials"]["screened"] == 1  # awaiting its confirmation: the night ended


def test_a_loop_killed_between_a_verdict_and_its_file_leaves_no_stale_result(make_lab):
    """The verdict on confirmation runs is committed, then result.json written again: a
    loop killed in between left the screen's `screened` in the file for good (a new loop
    rewrote only missing files)."""
    lab, _ = night(make_lab, SLOW, {"boost": 0.5})
    result = lab / ".nightlab" / "trials" / "4" / "result.json"
    record = json.loads(result.read_text())
    assert record["verdict"] == "kept"
    stale = {**record, "verdict": "screened", "judgement": record["judgement"]["screen"]}
    result.write_text(json.dumps(stale))  # what the killed loop left
    Lab(lab).run(report=lambda line: None)  # nothing to do: max_trials reached
    assert json.loads(result.read_text())["verdict"] == "kept"


def test_finish_up_rounds_are_its_own_not_the_ratchets_re_runs_of_the_best(make_lab):
    """Trial 4 is kept; a challenger makes the ratchet run it once more (trial 10). Asked
    for 2 final rounds, finish-up counted that re-run as one of them and ran only one."""
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": p} for p in (
            {"boost": 0.5}, {"boost": 0.9, "mode": "first_seed_only", "cboost": 0.51})],
        trial=SLOW, modes=("first_seed_only",), confirm_runs=2, max_trials=5,
        toml_extra=KNOBS,
    )  # fmt: skip
    Lab(lab).finish_up(minutes_left=30, final_rounds=2, top_k=1)
    final = Lab(lab).run(report=lambda line: None)
    assert final["end_reason"] == "finish-up complete"
    by = rows(lab, "SELECT d.worker, count(*) FROM trials t JOIN decisions d "
                   "ON d.id = t.decision_id WHERE t.confirms = 4 GROUP BY d.worker")  # fmt: skip
    assert dict(by) == {"ratchet": 3, "finish-up": 2}  # 2 confirmations + 1 re-run; 2 rounds


UNSTABLE = """
import json, os
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
noise = 0.005 * ((seed * 7) % 3 - 1)
if p.get("mode") == "first_seed_only":  # (the knob's name) an unstable learning rate:
    print(f"score={0.40 if seed % 2 else 0.93 + noise}")  # one seed in two collapses
else:
    print(f"score={0.90 + p['boost'] + noise}")
"""


@pytest.mark.xfail(strict=True, reason="open (h-attack finding): one unstable candidate's "
                   "spread is pooled into everyone's σ and the ratchet never keeps again")
def test_one_unstable_candidate_does_not_blind_the_ratchet_for_the_night(make_lab):
    """Baseline sd 0.005. A candidate that collapses on one seed in two (0.93, 0.40: no NaN,
    just an unstable learning rate) passes the screen and is not confirmed — rightly — but
    its spread enters the pooled σ: σ goes from 0.011 to 0.37, and an honest +0.08 (16
    baseline sd) is discarded at the screen, as is everything after it: with nothing past
    the screen, nothing new is measured twice and σ never comes back down."""
    lab, final = night(make_lab, UNSTABLE, {"boost": 0.0, "mode": "first_seed_only"},
                       {"boost": 0.08})  # fmt: skip
    verdicts = dict(rows(lab, "SELECT id, verdict FROM trials WHERE kind = 'trial'"))
    assert verdicts[4] == "not_confirmed"
    assert verdicts[7] in ("screened", "kept")  # +16 sd: past the screen at least


def test_a_night_stopped_mid_confirmation_leaves_the_screened_trial_in_mlflow(
    make_lab, tmp_path
):
    """Stop (graceful) while trial 4's first confirmation runs: the night ends with 4
    `screened`. Its confirmation run 5 is in MLflow (tagged nightlab.confirms=4), 4 itself
    is not, and stays out unless the night is resumed; the loop says '1 trial(s) not logged
    yet (see .nightlab/tracking.log)' as if the mirror had failed."""
    import subprocess
    import sys

    from conftest import spawn_loop, wait_until

    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": {"boost": 0.5, "csleep": 2}}],
        trial=SLOW, modes=("first_seed_only",), confirm_runs=2, max_trials=4,
        tracking=True, toml_extra=KNOBS,
    )  # fmt: skip
    loop = spawn_loop(lab, log=tmp_path / "loop.log")
    try:
        wait_until(lambda: (lab / ".nightlab" / "state.db").exists() and rows(
            lab, "SELECT count(*) FROM trials WHERE kind = 'confirm' AND status = 'running'"
        )[0][0] > 0, 60, proc=loop)  # fmt: skip
        subprocess.run([sys.executable, "-m", "nightlab", "stop", str(lab)], check=True,
                       capture_output=True)  # fmt: skip
        assert loop.wait(60) == 0
    finally:
        if loop.poll() is None:
            loop.kill()
    assert rows(lab, "SELECT verdict FROM trials WHERE id = 4") == [("screened",)]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    only_trials = "tags.`nightlab.trial_id` LIKE '%'"  # not the night's parent run
    found = client.search_runs([exp.experiment_id], only_trials)
    logged = {r.data.tags["nightlab.trial_id"] for r in found}
    assert "4" in logged
    assert "not logged yet" not in (tmp_path / "loop.log").read_text()


def test_finish_up_rounds_go_to_what_the_ratchet_keeps_on_seeds_never_run(make_lab):
    """Two slots; the target is reached when A (trial 4) is kept, which forces finish-up
    while B (trial 5) still runs. B passes the screen; while its verdict waits on A's
    re-run (seed 1002, slow), finish-up drew its queue: top_k = 1 gave both final rounds
    to A, none to B (kept a moment later, the final pick), and one of A's rounds ran on
    seed 1002, the seed of the re-run still running."""
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": p} for p in (
            {"boost": 0.5, "sleep": 0.2, "slow_seed": 1002},
            {"boost": 0.9, "sleep": 1.5, "csleep": 0.5})],
        trial=SLOW, modes=("first_seed_only",), confirm_runs=2, max_trials=5,
        toml_extra=KNOBS,
    )  # fmt: skip
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace('direction = "maximize"',
                                             'direction = "maximize"\ntarget = 1.4'))  # fmt: skip
    Lab(lab).finish_up(minutes_left=30, final_rounds=2, top_k=1)
    final = Lab(lab).run(report=lambda line: None, slots=2)
    assert final["end_reason"] == "finish-up complete" and final["best"]["trial"] == 5
    runs = rows(lab, "SELECT t.confirms, t.seed, d.worker FROM trials t JOIN decisions d "
                     "ON d.id = t.decision_id WHERE t.kind = 'confirm'")  # fmt: skip
    rounds = [c for c, _, w in runs if w == "finish-up"]
    assert rounds.count(5) == 2, runs
    seeds = [(c, s) for c, s, _ in runs]
    assert len(seeds) == len(set(seeds)), runs  # never a seed a candidate already ran


UNEVEN = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
low, high = p.get("slow_seed", 1000), 2001 - p.get("slow_seed", 1000)  # (the knob's name)
if p["boost"] and seed == low:
    print("score=0.995")  # below the best's mean (~1.0): the confirmation cannot succeed
elif p["boost"] and seed == high:
    time.sleep(1.5)
    print("score=1.3")
else:
    print(f"score={1.0 + p['boost'] + 0.01 * ((seed * 7) % 3 - 1)}")
"""


@pytest.mark.parametrize(("slots", "low"), [(2, 1000), (1, 1001)])
def test_a_confirmation_run_below_the_best_mean_is_never_kept(make_lab, slots, low):
    """README: a confirmation run that does not even beat the best's mean ends the
    confirmation, `not_confirmed`. With two slots (3 runs due, the one below ends first) the
    trial was kept on 2 runs, the third never run; with one slot, when the run below came
    second, it was kept too: the verdict hung on the order the runs ended in."""
    lab = make_lab(
        decisions=[{"action": "run", "rationale": WHY, "params": {"boost": 0.5,
                                                                  "slow_seed": low}}],
        trial=UNEVEN, modes=("first_seed_only",), confirm_runs=3 if slots == 2 else 2,
        max_trials=11, baseline_repeats=10, toml_extra=KNOBS,
    )  # fmt: skip
    final = Lab(lab).run(report=lambda line: None, slots=slots)
    (verdict, judgement), = rows(lab, "SELECT verdict, judgement FROM trials WHERE id = 11")
    assert verdict == "not_confirmed", judgement
    assert "did not beat the best's mean" in json.loads(judgement)["reason"]
    assert final["best"]["trial"] == 1
