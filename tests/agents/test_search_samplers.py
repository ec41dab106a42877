"""The `search` worker with each sampler, asking the lab's persistent Optuna study: its
proposals stay inside the `[search]` clamps; a resumed night does not repeat the last one's
proposals; a `[search]` space edited between nights (a knob added, removed, narrowed, its
choices or log scale changed) never stops the worker; a study that fails mid-night is left
for an in-memory one; a sampler whose package is missing fails with one clear line."""

from __future__ import annotations

import importlib.util
import random
import shutil
import types
import warnings

import pytest

from nightlab import UserError
from nightlab.agents.search import SearchWorker, sampler_for
from nightlab.config import SearchSettings
from nightlab.store.study import LabStudy

from conftest import make_config

SPACE = {
    "lr": {"low": 1e-4, "high": 1.0, "log": True, "default": 0.01},
    "layers": {"low": 1, "high": 8, "default": 2},
    "width": {"low": 16, "high": 1024, "log": True, "type": "int", "default": 64},
    "dropout": {"low": 0.0, "high": 0.5, "default": 0.1},
    "opt": {"choices": ["sgd", "adam", "rms"], "default": "sgd"},
}
SAMPLERS = {
    "tpe": {"sampler": "tpe"},
    "multivariate-tpe": {"sampler": "tpe", "multivariate": True},
    "gp": {"sampler": "gp"},
    "random": {"sampler": "random"},
    "cmaes": {"sampler": "cmaes"},
}
EDITS = {
    "a knob added": {**SPACE, "wd": {"low": 0.0, "high": 0.1, "default": 0.0}},
    "a knob removed": {k: v for k, v in SPACE.items() if k != "layers"},
    "ranges narrowed": {**SPACE, "lr": {"low": 1e-2, "high": 0.1, "log": True, "default": 0.01},
                        "layers": {"low": 4, "high": 6, "default": 4}},
    "a choice replaced": {**SPACE, "opt": {"choices": ["adam", "lion"], "default": "adam"}},
    "a choice added": {**SPACE, "opt": {"choices": ["sgd", "adam", "rms", "lion"],
                                        "default": "sgd"}},
    "log scale turned on": {**SPACE, "layers": {"low": 1, "high": 8, "log": True, "default": 2}},
    "int made float": {**SPACE, "layers": {"low": 1.0, "high": 8.0, "default": 2.0}},
}  # fmt: skip


def row(trial_id, params, objective, status="succeeded"):
    return types.SimpleNamespace(
        id=trial_id, kind="trial", status=status, params=params, objective=objective
    )


def config(space, settings, direction="minimize"):
    return make_config("loss", direction, search={**space, "startup_trials": 3, **settings})


def night(tmp_path, cfg, rows, *, seed=0, decisions=8):
    """One night of the worker on the lab study in `tmp_path`: its proposals, the rows."""
    worker, study = SearchWorker(cfg, seed=seed), LabStudy(tmp_path, cfg)
    study.sync(rows)
    worker.use_study(study)
    worker.resume(list(rows), len(rows))
    rng, proposals = random.Random(len(rows)), []
    for _ in range(decisions):
        decision = worker.decide({})
        trial_id = len(rows) + 1
        study.begin(trial_id, "trial", decision.params, decision.asked)
        done = row(trial_id, decision.params, rng.random())
        study.finish(done)
        worker.observe(done)
        rows.append(done)
        proposals.append(decision.params)
    return proposals


def needs(sampler):
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("cmaes is not installed (its missing-package line is tested below)")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_proposals_stay_inside_the_clamps(tmp_path, sampler):
    needs(sampler)
    cfg = config(SPACE, SAMPLERS[sampler])
    for params in night(tmp_path, cfg, [], decisions=12):
        assert set(params) == set(SPACE)
        assert not cfg.param_violations(params), params


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_resumed_night_does_not_repeat_the_last_nights_proposals(tmp_path, sampler):
    needs(sampler)
    cfg, rows = config(SPACE, SAMPLERS[sampler]), []
    first = night(tmp_path, cfg, rows, decisions=5)
    second = night(tmp_path, cfg, rows, decisions=5)
    assert not [p for p in second if p in first], "a resumed night proposed the same again"
    study = LabStudy(tmp_path, cfg).study
    assert len(study.trials) == 10, "every proposal once in the study"


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_space_edited_between_nights_never_stops_the_worker(tmp_path, sampler, edit):
    needs(sampler)
    rows: list = []
    night(tmp_path, config(SPACE, SAMPLERS[sampler]), rows, decisions=8)
    cfg = config(EDITS[edit], SAMPLERS[sampler])
    for params in night(tmp_path, cfg, rows, seed=1, decisions=6):
        assert set(params) == set(EDITS[edit]) and not cfg.param_violations(params), params
    study = LabStudy(tmp_path, cfg).study
    assert sorted(t.user_attrs["nightlab_trial"] for t in study.trials) == list(range(1, 15))


def test_an_incompatible_study_is_said_once_and_the_search_learns_from_the_store(tmp_path):
    rows: list = []
    night(tmp_path, config(SPACE, {}), rows, decisions=4)
    cfg = config(EDITS["a choice replaced"], {})
    worker, study = SearchWorker(cfg), LabStudy(tmp_path, cfg)
    worker.use_study(study)
    worker.resume(rows, 4)
    first, second = worker.decide({}), worker.decide({})
    assert "in memory" in first.rationale and "knob opt" in first.rationale
    assert "in memory" not in second.rationale
    assert first.asked is None, "an in-memory number never names a lab study trial"
    # the replayed trials whose choice still exists inform the in-memory study
    kept = [r for r in rows if r.params["opt"] in ("adam", "lion")]
    assert len([t for t in worker.study.trials if t.state.name == "COMPLETE"]) == len(kept)


def test_a_study_failing_mid_night_leaves_the_worker_asking_in_memory(tmp_path):
    cfg, rows = config(SPACE, {}), []
    night(tmp_path, cfg, rows, decisions=4)
    worker, study = SearchWorker(cfg), LabStudy(tmp_path, cfg)
    worker.use_study(study)
    worker.resume(list(rows), 4)
    journal = tmp_path / "optuna.journal"
    journal.unlink()
    journal.mkdir()  # the file is gone from under the study (a flaky disk)
    said = []
    for _ in range(3):  # the loop ends the night after max_same_errors = 3 worker errors
        decision = worker.decide({})
        assert not cfg.param_violations(decision.params) and decision.asked is None
        said.append("the lab's Optuna study failed" in decision.rationale)
    assert said == [True, False, False]
    completed = [t for t in worker.study.trials if t.state.name == "COMPLETE"]
    assert len(completed) == 4, "the in-memory study replays the night's ended trials"
    shutil.rmtree(journal)


@pytest.mark.parametrize(("sampler", "module"), [("gp", "torch"), ("gp", "scipy"),
                                                  ("cmaes", "cmaes")])  # fmt: skip
def test_a_sampler_whose_package_is_missing_fails_with_one_clear_line(monkeypatch, sampler,
                                                                      module):  # fmt: skip
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(UserError) as info:
        sampler_for(SearchSettings(sampler=sampler), seed=0)
    text = str(info.value)
    assert "\n" not in text and f"pip install {module}" in text and f'"{sampler}"' in text
    with pytest.raises(UserError):  # at the worker's start, not at its first proposal
        SearchWorker(config(SPACE, {"sampler": sampler}))
