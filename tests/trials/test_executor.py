"""The executor seam (trials/executor.py): `local` and `slurm` built in, any other
`[executor] kind` an entry-point plugin (tests/plugins/nightlab_plugin_executor: `marked`
runs trials locally and marks them, `broken` fails to import)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nightlab import Lab
from nightlab.config import ConfigError, PluginError, load_config
from nightlab.trials import local, slurm
from nightlab.trials.executor import Executor, Handle, Trial, TrialSpec, attach, executor_for
from nightlab.trials.watch import wait_any

PLUGIN_PACKAGE = "nightlab-plugin-executor"


def with_executor(lab: Path, kind: str, extra: str = "") -> Path:
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + f'\n[executor]\nkind = "{kind}"\n{extra}')
    return lab


def spec(tmp_path: Path, code: str = "print('score=1.5')", trial_id: int = 1) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        command=f"{sys.executable} -c \"{code}\"",
        workdir=tmp_path,
        trial_dir=tmp_path / "trials" / str(trial_id),
        env=dict(os.environ),
        budget_s=60,
        hang_s=None,
        metric="score",
        reduce="last",
        maximize=True,
    )


def finish(trial: Trial, timeout: float = 60) -> local.Outcome:
    deadline = time.monotonic() + timeout
    while (outcome := trial.poll()) is None:
        assert time.monotonic() < deadline, "the trial did not end"
        wait_any([trial], 0.5)
    return outcome


def test_the_built_in_executors(make_lab):
    lab = make_lab()
    ex = executor_for(load_config(lab))
    assert isinstance(ex, local.LocalExecutor) and isinstance(ex, Executor)
    assert (ex.kind, ex.slots, ex.local_gpus) == ("local", 1, True)
    with_executor(lab, "slurm", "slots = 2\nmax_concurrent = 5\n")
    ex = executor_for(load_config(lab))
    assert isinstance(ex, slurm.SlurmExecutor) and isinstance(ex, Executor)
    assert (ex.kind, ex.slots, ex.local_gpus) == ("slurm", 5, False)


def test_a_local_trial_is_a_trial_and_is_found_again_by_its_handle(make_lab, tmp_path):
    cfg = load_config(make_lab())
    ex = executor_for(cfg)
    trial = ex.start(spec(tmp_path, "import time; time.sleep(300)"))
    assert isinstance(trial, Trial) and trial.events == [] and trial.fileno() is not None
    handle = trial.handle
    assert handle == Handle(kind="local", pid=trial.pid, pid_started_at=trial.created)
    # a loop that died left it running: a new loop watches it again, by its handle (also
    # one recorded without a kind, as older loops did)
    again = attach(cfg, trial.spec, Handle(pid=handle.pid, pid_started_at=handle.pid_started_at),
                   trial.started_at)  # fmt: skip
    assert again is not None and again.handle == handle
    assert attach(cfg, trial.spec, handle, trial.started_at, using=ex).handle == handle
    again.kill("killed", f"{local.INTERRUPTED}: test")
    assert finish(again).status == "killed"
    finish(trial)  # reaped by its parent
    assert attach(cfg, trial.spec, handle, trial.started_at) is None  # gone now


def test_a_slurm_trial_declares_what_the_loop_uses_without_a_process(tmp_path):
    trial = slurm.SlurmTrial(spec(tmp_path), SimpleNamespace(job_id=123), time.time())
    assert isinstance(trial, Trial)
    assert trial.handle == Handle(kind="slurm", job_id="123") and trial.fileno() is None


def test_wait_any_polls_trials_without_a_file_descriptor(tmp_path):
    job = SimpleNamespace(fileno=lambda: None, poll_every=0.05)
    started = time.monotonic()
    wait_any([job], timeout=5)
    assert time.monotonic() - started < 1
    r, w = os.pipe()
    os.write(w, b"x")  # a trial that has ended: its fd is readable
    ended = SimpleNamespace(fileno=lambda: r, poll_every=0.01)
    started = time.monotonic()
    wait_any([ended], timeout=5)
    assert time.monotonic() - started < 1
    os.close(r), os.close(w)


def test_a_plugin_executor_runs_trials(make_lab, tmp_path):
    cfg = load_config(with_executor(make_lab(), "marked"))
    ex = executor_for(cfg)
    assert type(ex).__module__ == "nightlab_plugin_executor" and isinstance(ex, Executor)
    trial = ex.start(spec(tmp_path, "import os; print('score=' + str(len(os.environ['NIGHTLAB_EXECUTOR'])))"))  # noqa: E501
    outcome = finish(trial)
    assert (outcome.status, outcome.objective) == ("succeeded", len("marked"))
    assert (trial.spec.trial_dir / "executor").read_text() == "marked"


def test_a_night_runs_its_trials_through_a_plugin_executor(make_lab):
    lab = with_executor(make_lab(max_trials=4), "marked")
    Lab(lab).run(report=lambda line: None)
    trials = sorted((lab / ".nightlab" / "trials").iterdir())
    assert len(trials) == 4
    assert all((t / "executor").read_text() == "marked" for t in trials)
    assert all('"succeeded"' in (t / "result.json").read_text() for t in trials)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("slurn", "did you mean 'slurm'"),
        ("nope", "plugins installed: broken, marked"),
    ],
)
def test_an_unknown_executor_kind_fails_at_load_in_one_line(make_lab, kind, says):
    lab = with_executor(make_lab(), kind)
    with pytest.raises(ConfigError) as err:
        load_config(lab)
    message = str(err.value)
    assert "\n" not in message
    assert f"[executor] kind = {kind!r}" in message and says in message
    assert "built in: local, slurm" in message and "pip install the package" in message
    assert "nightlab.executors" in message


def test_a_missing_plugin_fails_in_one_line_naming_it(make_lab):
    cfg = load_config(make_lab())
    with pytest.raises(PluginError) as err:
        executor_for(cfg, "nope")  # (load_config refuses such a kind before this)
    message = str(err.value)
    assert "\n" not in message and "'nope'" in message and "pip install" in message


def test_a_plugin_that_fails_to_import_fails_in_one_line_naming_its_package(make_lab):
    cfg = load_config(with_executor(make_lab(), "broken"))  # registered: the name is fine
    with pytest.raises(PluginError) as err:
        executor_for(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "'broken'" in message and f"package {PLUGIN_PACKAGE}" in message
    assert "ImportError" in message


def test_a_night_with_a_broken_plugin_executor_fails_at_start_naming_the_package(make_lab):
    lab = with_executor(make_lab(), "broken")
    with pytest.raises(PluginError, match=f"'broken' \\(package {PLUGIN_PACKAGE}\\)"):
        Lab(lab).run(report=lambda line: None)
    assert not (lab / ".nightlab" / "trials").exists()
