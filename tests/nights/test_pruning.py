"""Pruning on live curves, in real nights: a hopeless trial is stopped early against the
baseline envelope and recorded `pruned` with its step, value and reference; a good one runs
to its end; confirmation runs are never pruned; a lab that prints no steps is never pruned;
the lab's Optuna study survives a SIGKILL of the loop."""

from __future__ import annotations

import json
import os
import signal
import time

import optuna
import pytest

from nightlab import Lab
from pruned_night import CURVE, FINAL_ONLY, curve_lab, run, trials

from conftest import spawn_loop, try_rows, wait_for

pytestmark = pytest.mark.slow


def test_a_hopeless_trial_is_pruned_early_and_a_good_one_runs_to_its_end(tmp_path):
    lab = curve_lab(
        tmp_path / "lab",
        [
            run({"offset": 3.0, "pause": 0.5}, "a hopeless setting"),  # 20 steps: 10 s
            run({"offset": 0.0, "pause": 0.05, "steps": 21}, "a good setting, a step longer"),
        ],
    )
    lines: list[str] = []
    final = Lab(lab).run(report=lines.append)
    assert final["state"] == "finished"

    base, hopeless, good = trials(lab)[2], trials(lab)[3], trials(lab)[4]
    assert base["kind"] == "baseline" and base["status"] == "succeeded"
    assert hopeless["status"] == "pruned" and hopeless["verdict"] == "discarded"
    assert hopeless["objective"] is None
    record = json.loads(hopeless["pruning"])
    # warmup_steps = 2: compared from step 2 on, with the three baseline curves
    assert record["step"] == 2 and record["curves"] == 3 and record["baseline_curves"] == 3
    assert record["value"] == pytest.approx(1 / 3 + 3.0, abs=1e-5)
    assert record["reference"] == pytest.approx(1 / 3 + 0.001, abs=1e-5)  # the median
    assert record["rule"] == "median"
    assert hopeless["wall_s"] < 4, "pruned at step 2 of 20, half a second a step"
    assert "pruned at step 2" in hopeless["reason"]
    assert any(f"trial {hopeless['id']}" in line and "pruned" in line for line in lines)
    story = (lab / ".nightlab" / "artifacts" / "storyline.md").read_text()
    assert "pruned at step 2" in story

    # the partial curve is kept in the trial's folder
    folder = lab / ".nightlab" / "trials" / str(hopeless["id"])
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").open()]
    assert 2 <= max(steps) < 19
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "pruned" and result["pruning"]["step"] == 2

    assert good["status"] == "succeeded" and good["pruning"] is None
    assert good["objective"] == pytest.approx(1 / 21 + 0.001 * (good["seed"] % 10), abs=1e-5)

    # the study mirrors the store: every baseline and worker trial, how it ended
    study = optuna.load_study(
        study_name="tiny:loss:minimize",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(lab / ".nightlab/optuna.journal"))
        ),
    )
    states = {t.user_attrs["nightlab_trial"]: t.state.name for t in study.trials}
    assert states == {1: "COMPLETE", 2: "COMPLETE", 3: "COMPLETE", 4: "PRUNED", 5: "COMPLETE"}
    assert max(study.trials[3].intermediate_values) == 2


def test_no_pruning_when_turned_off(tmp_path):
    lab = curve_lab(
        tmp_path / "lab", [run({"offset": 3.0, "pause": 0.02})],
        pruning='\n[pruning]\nkind = "none"\n',
    )  # fmt: skip
    Lab(lab).run(report=lambda line: None)
    assert [t["status"] for t in trials(lab)] == ["succeeded"] * 4


def test_a_lab_that_prints_only_a_final_value_is_never_pruned(tmp_path):
    lab = curve_lab(
        tmp_path / "lab", [run({"offset": 3.0}), run({"offset": 5.0})], trial=FINAL_ONLY,
        pruning="\n[pruning]\nwarmup_steps = 0\nmin_trials = 1\n",
    )  # fmt: skip
    Lab(lab).run(report=lambda line: None)
    assert [t["status"] for t in trials(lab)] == ["succeeded"] * 5


def test_confirmation_finishup_and_test_runs_are_never_pruned(tmp_path):
    # a better curve, screened, confirmed on new seeds, then finish-up's rounds and the test
    # run of the final pick: each of them (seeds >= 3, the test run) begins far worse than
    # the baseline (a worker's trial would be pruned at step 2), yet none of them is stopped
    curve = CURVE.replace(
        "loss = 1.0 / (step + 1)",
        'late = seed >= 3 or os.environ.get("NIGHTLAB_TEST")\n'
        "    loss = 5.0 if step < 5 and late else 1.0 / (step + 1)",
    ) + 'if os.environ.get("NIGHTLAB_TEST"):\n    print(f"test_loss={loss}", flush=True)\n'
    lab = curve_lab(
        tmp_path / "lab", [run({"offset": 0.0, "pause": 0.02, "steps": 40})],
        trial=curve, confirm_runs=2,
    )  # fmt: skip
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace(
        'direction = "minimize"', 'direction = "minimize"\ntest_metric = "test_loss"'))  # fmt: skip
    Lab(lab).finish_up(run_hours=8, minutes_left=60, final_rounds=1, top_k=1, note="t")
    final = Lab(lab).run(report=lambda line: None)
    assert final["end_reason"] == "finish-up complete"

    got = trials(lab)
    assert [t["verdict"] for t in got if t["kind"] == "trial"] == ["kept"]
    late = [t for t in got if t["kind"] in ("confirm", "test")]
    assert {t["kind"] for t in late} == {"confirm", "test"}
    assert len([t for t in late if t["kind"] == "confirm"]) == 3  # 2 ratchet + 1 finish-up
    for t in late:
        assert t["status"] == "succeeded" and t["pruning"] is None, dict(t)
        folder = lab / ".nightlab" / "trials" / str(t["id"])
        first = json.loads((folder / "metrics.jsonl").open().readline())
        assert first["metrics"]["loss"] >= 5.0  # it began far worse than the baseline


def test_the_study_survives_a_sigkill_of_the_loop(tmp_path):
    lab = curve_lab(
        tmp_path / "lab", [run({"offset": 0.5, "pause": 0.2}), run({"offset": 0.1})],
        pruning='\n[pruning]\nkind = "none"\n',
    )  # fmt: skip
    loop = spawn_loop(lab, log=tmp_path / "loop.log")
    try:  # killed while trial 4 runs: its study trial is left running, mid-curve
        wait_for(lambda: try_rows(lab, "SELECT id FROM trials WHERE id = 4 AND status = 'running'"),
                 timeout=60, what="trial 4 running")  # fmt: skip
        time.sleep(1.0)
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=10)
    finally:
        if loop.poll() is None:
            os.killpg(loop.pid, signal.SIGKILL)
    journal = lab / ".nightlab" / "optuna.journal"
    with journal.open("ab") as f:  # as if killed in the middle of a write
        f.write(b'{"op_code":4,"worker_id":"x","trial_id":')
    lines: list[str] = []
    final = Lab(lab).run(report=lines.append)
    assert final["state"] == "finished"
    assert any("cut a torn last line off optuna.journal" in line for line in lines)

    study = optuna.load_study(
        study_name="tiny:loss:minimize",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
    )
    by_trial = {t.user_attrs["nightlab_trial"]: t for t in study.trials}
    recorded = {t["id"]: t["status"] for t in trials(lab) if t["kind"] in ("baseline", "trial")}
    assert set(by_trial) == set(recorded), "every trial of the store, once"
    assert len(study.trials) == len(recorded)
    for trial_id, status in recorded.items():
        state = by_trial[trial_id].state.name
        assert state == {"succeeded": "COMPLETE"}.get(status, "FAIL"), (trial_id, status)
    assert by_trial[4].intermediate_values, "the curve reported before the kill is kept"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_reads_the_lab_study(tmp_path):
    import shutil
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    lab = curve_lab(tmp_path / "lab", [run({"offset": 3.0, "pause": 0.3})])
    Lab(lab).run(report=lambda line: None)
    program = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert program, "optuna-dashboard is a test dependency (pyproject [dev])"
    port = free_port()
    server = subprocess.Popen(
        [program, str(lab / ".nightlab" / "optuna.journal"), "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def study() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/0") as r:
                    return json.loads(r.read())
            except OSError:
                return None

        got = wait_for(study, timeout=30, what="optuna-dashboard answering")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert got["name"] == "tiny:loss:minimize"
    states = [t["state"] for t in got["trials"]]
    assert states == ["Complete", "Complete", "Complete", "Pruned"]
    pruned = got["trials"][3]
    assert [v["step"] for v in pruned["intermediate_values"]] == [0, 1, 2]
    attrs = {a["key"]: a["value"] for a in pruned["user_attrs"]}
    assert attrs["nightlab_trial"] == "4" and attrs["nightlab_kind"] == "trial"
