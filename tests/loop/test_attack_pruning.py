"""Attacks on pruning: hostile curves (steps that are no steps, values that are no values,
duplicates, floods), a curve whose tail arrives after the last poll (buffered output), a
Slurm requeue's new reader, a study that fails mid-night; and whole nights where the
`[search]` space is edited between nights or the study file breaks mid-night."""

from __future__ import annotations

import json
import shutil
import time
import types

import optuna
import pytest

from nightlab import Lab
from nightlab.loop.lines import Lines
from nightlab.loop.pruning import REPORTS_PER_POLL, Pruning, on_grid
from nightlab.trials.metrics import MetricReader
from nightlab.trials.watch import Outcome

from conftest import build_lab, make_config, rows


class Night:
    """What Pruning reads of the loop's Night: a state folder, the config, a store."""

    def __init__(self, state, cfg, stored=()):
        self.state, self.cfg, self.run_id = state, cfg, 1
        self.lines: list[str] = []
        self.report = Lines(self.lines.append)
        self.events: list[tuple] = []
        self.store = types.SimpleNamespace(trials=lambda *a: list(stored))

    def event(self, kind, /, **data):
        self.events.append((kind, data))


class Trial:
    def __init__(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.reader = MetricReader(folder, "loss")
        self.killed: list[tuple[str, str]] = []

    def prints(self, *lines):
        with (self.folder / "stdout.log").open("a") as f:
            f.write("".join(line + "\n" for line in lines))
        self.reader.read()

    def kill(self, status, reason):
        self.killed.append((status, reason))


class Worker:
    name = "search"

    def __init__(self):
        self.given: list = []

    def use_study(self, study):
        self.given.append(study)


def opened(tmp_path, **pruning):
    cfg = make_config("loss", "minimize", pruning={"warmup_steps": 0, "min_trials": 1, **pruning})
    night = Night(tmp_path / "state", cfg)
    night.state.mkdir()
    p, worker = Pruning(night, None), Worker()
    p.open(worker)
    assert p.study is not None and worker.given == [p.study]
    return p, night, worker


def curve(p, trial_id):
    return dict(p.study._frozen(trial_id).intermediate_values)


def outcome(trial, status="succeeded", objective=0.5):
    return Outcome(
        status=status, exit_code=0, objective=objective, metrics={}, wall_s=1.0,
        peak_rss_mb=None, log_tail=None, reason=None, history=list(trial.reader.history),
    )  # fmt: skip


def test_steps_and_values_that_are_no_steps_or_values_never_reach_the_study(tmp_path):
    p, night, _ = opened(tmp_path)
    p.started(1, "trial", {}, None)
    t = Trial(tmp_path / "t1")
    t.prints(
        "step=-1 loss=0.0", "step=1e300 loss=0.0", "step=inf loss=0.0", "step=nan loss=0.0",
        f"step={2**62 + 1} loss=0.0", "step=4 loss=nan", "step=5 loss=inf", "step=6 loss=-inf",
        "step=101 loss=0.0",  # off the grid: 101..999 are reported every 10
        "loss=0.0",  # no step: never compared
        "step=7 val/loss=0.0 train_loss=0.0 loss.ema=0.0",  # other metrics on the line
        "step=8 loss=1e308", "step=9 loss=2.0", "step=9 loss=0.0",  # a duplicate: first wins
        "step=110 loss=3.0",
    )  # fmt: skip
    p.check(1, "trial", t)
    assert curve(p, 1) == {8: 1e308, 9: 2.0, 110: 3.0}
    assert not night.lines, night.lines


def test_the_tail_of_a_curve_read_after_the_last_poll_reaches_the_study(tmp_path):
    # a trial whose stdout is a file is block-buffered: its whole curve can arrive at exit,
    # after the last poll; the study must hold it all, or later trials lack a reference
    p, night, _ = opened(tmp_path)
    p.started(1, "baseline", {}, None)
    t = Trial(tmp_path / "t1")
    t.prints(*(f"step={s} loss={1 / (s + 1):.6f}" for s in range(300)))
    p.outcome(1, outcome(t))
    assert sorted(curve(p, 1)) == [s for s in range(300) if on_grid(s)]
    p.started(2, "trial", {}, None)
    t2 = Trial(tmp_path / "t2")
    t2.prints("step=0 loss=0.1")
    p.check(2, "trial", t2)
    p.outcome(2, outcome(t2))  # ended after one poll: the rest of its points too
    t2.prints(*(f"step={s} loss=0.1" for s in range(1, 50)))
    assert len(curve(p, 2)) == 1, "points after the outcome are not the trial's"


def test_a_flood_of_steps_is_reported_in_bounded_polls_and_caught_up(tmp_path):
    p, night, _ = opened(tmp_path)
    p.started(1, "baseline", {}, None)
    t = Trial(tmp_path / "t1")
    t.prints(*(f"step={s} loss={1 / (s + 1):.6f}" for s in range(100_000)))
    grid = [s for s in range(100_000) if on_grid(s)]
    polls, slowest = 0, 0.0
    while len(curve(p, 1)) < len(grid):
        started = time.perf_counter()
        p.check(1, "baseline", t)
        slowest = max(slowest, time.perf_counter() - started)
        polls += 1
        assert polls <= len(grid) // REPORTS_PER_POLL + 1
    assert sorted(curve(p, 1)) == grid
    assert slowest < 2.0, f"one poll held the loop {slowest:.2f} s"


def test_a_requeued_trials_new_reader_reports_nothing_twice(tmp_path):
    p, night, _ = opened(tmp_path)
    p.started(1, "trial", {}, None)
    t = Trial(tmp_path / "t1")
    t.prints(*(f"step={s} loss=1.0" for s in range(10)))
    p.check(1, "trial", t)
    calls = []
    report = p.study.report
    p.study.report = lambda *a: (calls.append(a), report(*a))
    t.reader = MetricReader(t.folder, "loss")  # what trials/slurm.py does on a requeue
    t.reader.read()  # the old attempt's lines are read again from the start
    t.prints(*(f"step={s} loss=0.5" for s in range(10, 15)))
    p.check(1, "trial", t)
    assert [c[1] for c in calls] == list(range(10, 15))
    assert curve(p, 1)[3] == 1.0 and curve(p, 1)[12] == 0.5


def test_a_study_failing_mid_night_stops_pruning_with_one_line_and_frees_the_worker(tmp_path):
    p, night, worker = opened(tmp_path)
    p.started(1, "trial", {}, None)
    t = Trial(tmp_path / "t1")
    t.prints("step=0 loss=1.0")
    p.check(1, "trial", t)
    journal = night.state / "optuna.journal"
    journal.unlink()
    journal.mkdir()  # the file is gone from under the study (a full or flaky disk)
    t.prints("step=1 loss=1.0", "step=2 loss=1.0")
    p.check(1, "trial", t)  # no exception: the night goes on
    t.prints("step=3 loss=1.0")
    p.check(1, "trial", t)
    assert p.study is None and not p.active
    assert len(night.lines) == 1 and "no pruning for the rest of this night" in night.lines[0]
    assert worker.given[-1] is None, "the search worker no longer asks a study nobody tells"
    done = p.outcome(1, outcome(t))
    assert done.status == "succeeded" and done.objective == 0.5
    p.ended(types.SimpleNamespace(id=1, kind="trial", status="succeeded", objective=0.5))
    assert len(night.lines) == 1 and not t.killed


def test_a_pruned_trial_is_never_kept_with_a_value(tmp_path):
    p, night, _ = opened(tmp_path)
    for trial_id in (1, 2):  # two finished reference curves at 0.1
        p.started(trial_id, "baseline", {}, None)
        ref = Trial(tmp_path / f"t{trial_id}")
        ref.prints(*(f"step={s} loss=0.1" for s in range(5)))
        p.outcome(trial_id, outcome(ref))
        p.ended(types.SimpleNamespace(id=trial_id, kind="baseline", status="succeeded",
                                      objective=0.1))  # fmt: skip
    p.started(3, "trial", {}, None)
    t = Trial(tmp_path / "t3")
    t.prints("step=0 loss=9.0", "step=1 loss=9.0")
    p.check(3, "trial", t)
    assert t.killed and t.killed[0][0] == "pruned"
    # it ended (exit 0, the objective printed) at the moment it was condemned
    done = p.outcome(3, outcome(t, status="pruned", objective=0.01))
    assert done.status == "pruned" and done.objective is None
    assert done.pruning["step"] == 1 and done.pruning["reference"] == pytest.approx(0.1)


def test_hyperband_meets_the_baselines_at_each_rungs_own_step(tmp_path):
    # baselines whose whole curve arrives in one poll; worse worker trials, a line a poll:
    # a rung must hold each rival's value at the rung's step (not its last), of its bracket
    p, night, _ = opened(tmp_path, kind="hyperband")
    curves = {}
    for i in (1, 2, 3):
        p.started(i, "baseline", {}, None)
        t = Trial(tmp_path / f"t{i}")
        t.prints(*(f"step={s} loss={1 / (s + 1) + i / 100}" for s in range(30)))
        p.check(i, "baseline", t)
        p.outcome(i, outcome(t, objective=0.1))
        p.ended(types.SimpleNamespace(id=i, kind="baseline", status="succeeded", objective=0.1))
        curves[i] = [1 / (s + 1) + i / 100 for s in range(30)]
    records = []
    for i in range(4, 12):
        p.started(i, "trial", {}, None)
        t = Trial(tmp_path / f"t{i}")
        for s in range(30):
            t.prints(f"step={s} loss={1 / (s + 1) + 1.0 + (i % 4) * 0.3}")
            p.check(i, "trial", t)
            if t.killed:
                break
        done = p.outcome(i, outcome(t, status="pruned" if t.killed else "succeeded"))
        records += [done.pruning] if done.pruning else []
        p.ended(types.SimpleNamespace(id=i, kind="trial", status=done.status, objective=1.0))
        curves[i] = [1 / (s + 1) + 1.0 + (i % 4) * 0.3 for s in range(30)]
    assert records and not night.lines
    assert any(r["reference"] < 1.0 for r in records), "no baseline was ever a rival"
    for record in records:
        seen = min(v for c in curves.values() for v in c[: record["step"] + 1])
        assert record["reference"] >= seen, (record, "a rival's value from a later step")


# ------------------------------------------------------------------------- real nights
CHOICE = """
[search.opt]
choices = ["sgd", "adam"]
default = "sgd"
"""
SLOW_TRIAL = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
for step in range(4):
    print(f"step={step} score={1.0 + p['boost'] + (0.1 if p['opt'] == 'adam' else 0)}",
          flush=True)
    time.sleep(0.05)
"""


def search_lab(path, max_trials):
    lab = build_lab(path, max_trials=max_trials, trial=SLOW_TRIAL)
    toml = (lab / "nightlab.toml").read_text()
    (lab / "nightlab.toml").write_text(toml.replace("[budget]", CHOICE + "\n[budget]"))
    return lab


def statuses(lab):
    return [r["status"] for r in rows(lab, "SELECT status FROM trials ORDER BY id")]


@pytest.mark.slow
def test_a_night_after_a_knobs_choices_were_edited_runs_its_trials(tmp_path):
    lab = search_lab(tmp_path / "lab", max_trials=6)
    first = Lab(lab).run(report=lambda line: None)
    assert first["state"] == "finished" and len(statuses(lab)) == 6
    toml = (lab / "nightlab.toml").read_text()
    (lab / "nightlab.toml").write_text(toml.replace('["sgd", "adam"]', '["sgd", "adam", "lion"]'))
    lines: list[str] = []
    Lab(lab).run(max_trials=12, report=lines.append)
    assert not [line for line in lines if "worker error" in line], lines
    assert len(statuses(lab)) == 12, "the second night ran its six trials"
    proposals = [json.loads(r["params"]) for r in rows(lab, "SELECT params FROM trials")]
    assert all(p["opt"] in ("sgd", "adam", "lion") for p in proposals)


@pytest.mark.slow
def test_a_study_file_broken_mid_night_leaves_a_search_night_running(tmp_path):
    lab = search_lab(tmp_path / "lab", max_trials=9)
    journal = lab / ".nightlab" / "optuna.journal"
    lines: list[str] = []

    def report(line):
        lines.append(line)
        if line.startswith("trial 5 ") and "started" in line and journal.is_file():
            journal.unlink()
            journal.mkdir()  # the disk fails under the study

    final = Lab(lab).run(report=report)
    assert final["state"] == "finished"
    assert statuses(lab) == ["succeeded"] * 9, "every trial of the night ran and ended"
    failed = [line for line in lines if "the Optuna study" in line]
    assert len(failed) == 1 and "no pruning for the rest of this night" in failed[0]
    assert not [line for line in lines if "worker error" in line], lines
    shutil.rmtree(journal)  # moved away: the next night rebuilds the study from the store
    Lab(lab).run(max_trials=12, report=lines.append)
    study = optuna.load_study(
        study_name="tiny:score:maximize",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
    )
    ids = sorted(t.user_attrs["nightlab_trial"] for t in study.trials)
    assert ids == list(range(1, len(statuses(lab)) + 1)), "every store trial, once"


def test_forged_curves_cannot_get_an_honest_trial_pruned(tmp_path):
    """Two trials print a loss of 0.001 at every step and end with 0.9: finished curves
    are the pruner's reference, so the honest trial at 0.3 (better than both results and
    the baseline's 0.5) was stopped as hopeless. A curve now counts only up to its result."""
    p, night, _ = opened(tmp_path)
    ends = {1: ("baseline", 0.5, 0.5), 2: ("trial", 0.001, 0.9), 3: ("trial", 0.001, 0.9)}
    for trial_id, (kind, printed, final) in ends.items():
        p.started(trial_id, kind, {}, None)
        ref = Trial(tmp_path / f"t{trial_id}")
        ref.prints(*(f"step={s} loss={printed}" for s in range(5)), f"loss={final}")
        p.outcome(trial_id, outcome(ref, objective=final))
        p.ended(types.SimpleNamespace(id=trial_id, kind=kind, status="succeeded",
                                      objective=final))  # fmt: skip
    p.started(4, "trial", {}, None)
    honest = Trial(tmp_path / "t4")
    honest.prints(*(f"step={s} loss=0.3" for s in range(5)))
    p.check(4, "trial", honest)
    assert honest.killed == []
    assert curve(p, 2) == {s: 0.9 for s in range(5)}  # bounded by its result
    assert curve(p, 1) == {s: 0.5 for s in range(5)}  # an honest curve as it was
    p.started(5, "trial", {}, None)
    hopeless = Trial(tmp_path / "t5")  # pruning still works: worse than every result
    hopeless.prints("step=0 loss=9.0", "step=1 loss=9.0")
    p.check(5, "trial", hopeless)
    assert hopeless.killed and hopeless.killed[0][0] == "pruned"


def test_a_failed_trials_forged_rungs_are_no_hyperbands_rival(tmp_path):
    """Hyperband ranks a trial against every rung value of its bracket, failed trials'
    too: a trial printing loss=0.001 at each step, then exiting 1 (or killed), left its
    forged rungs as rivals for good — no final objective bounded them. It delivered
    nothing, so its rungs now count as the worst value."""
    p, _, _ = opened(tmp_path, kind="hyperband")
    p.started(9, "baseline", {}, None)
    base = Trial(tmp_path / "t9")
    base.prints(*(f"step={s} loss=0.5" for s in range(30)))
    p.check(9, "baseline", base)
    p.outcome(9, outcome(base, objective=0.5))
    p.ended(types.SimpleNamespace(id=9, kind="baseline", status="succeeded", objective=0.5))
    p.started(1, "trial", {}, None)
    forger = Trial(tmp_path / "t1")
    for s in range(30):
        forger.prints(f"step={s} loss=0.001")
        p.check(1, "trial", forger)
    rungs = lambda: {k: v for k, v in p.study._frozen(1).system_attrs.items()  # noqa: E731
                     if k.startswith("completed_rung_")}  # fmt: skip
    assert rungs() and set(rungs().values()) == {0.001}
    p.outcome(1, outcome(forger, status="failed", objective=None))
    p.ended(types.SimpleNamespace(id=1, kind="trial", status="failed", objective=None))
    assert rungs() and set(rungs().values()) == {float("inf")}
