"""The loop job's batch script and record, attacked without a cluster: a hostile lab path or
option cannot run shell code, a restarted job drops the options that set the night's
clocks, a planted record is not believed, bad settings and option mixes are refused.
(tests/slurm/test_loop_job.py runs the job on a real Slurm.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nightlab.config import ConfigError, load_config
from nightlab.trials import loop_job

from conftest import NIGHTLAB, build_lab

FAKE_PYTHON = """#!/bin/sh
printf '%s\\n' "$@" > "$OUT/argv"
echo "$NIGHTLAB_LOOP_JOB" > "$OUT/job"
"""


def lab_at(path: Path, executor: str = 'kind = "slurm"') -> Path:
    lab = build_lab(path, decisions=[])
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + f"\n[executor]\n{executor}\n")
    return lab


def run_script(tmp_path: Path, lab: Path, args: list[str], restarts: str) -> list[str]:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    cfg = load_config(lab)
    real = sys.executable
    try:
        sys.executable = str(fake)
        text = loop_job.script(cfg, lab, lab / ".nightlab", args)
    finally:
        sys.executable = real
    script = tmp_path / "job.sh"
    script.write_text(text)
    env = {**os.environ, "OUT": str(tmp_path), "SLURM_JOB_ID": "42",
           "SLURM_RESTART_COUNT": restarts}  # fmt: skip
    subprocess.run(["bash", str(script)], env=env, check=True, cwd=tmp_path, timeout=30)
    assert (tmp_path / "job").read_text().strip() == "42"
    return (tmp_path / "argv").read_text().splitlines()


def test_a_hostile_lab_path_and_options_stay_arguments(tmp_path):
    lab = lab_at(tmp_path / "a lab $(touch PWNED) `touch PWNED2`; touch PWNED3 '\"")
    note = "$(touch PWNED4) ; rm -rf / #"
    argv = run_script(tmp_path, lab, ["--max-trials", "3", "--finishup-note", note], "0")
    assert argv == ["-m", "nightlab", "run", str(lab), "--max-trials", "3",
                    "--finishup-note", note]  # fmt: skip
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_a_restarted_job_passes_its_options_again(tmp_path):
    """The loop, not the restart count, drops the options that set the night's clocks
    (tests/trials/test_loop_job_attack.py: a job requeued before its first run kept them)."""
    lab = lab_at(tmp_path / "lab")
    args = ["--worker", "search", "--hours", "8", "--finishup-minutes", "30",
            "--top-k", "2", "--final-rounds", "1", "--max-trials", "40"]  # fmt: skip
    first = run_script(tmp_path, lab, args, "0")
    assert first[4:] == args
    again = run_script(tmp_path, lab, args, "2")
    assert again[4:] == args


def test_the_script_asks_slurm_for_the_lab_settings(tmp_path):
    lab = lab_at(tmp_path / "lab", 'kind = "slurm"\nloop_time = 90\nloop_cpus = 3\n'
                 'loop_mem = 2.5\npartition = "long"\nqos = "high"')  # fmt: skip
    text = loop_job.script(load_config(lab), lab, lab / ".nightlab", [])
    for line in ("--time=90", "--cpus-per-task=3", "--mem=2560M", "--partition=long",
                 "--qos=high", "--requeue", f"--signal=B:USR1@{loop_job.LEAD_S}",
                 "--open-mode=append"):  # fmt: skip
        assert f"#SBATCH {line}" in text
    assert "--account" not in text


@pytest.mark.parametrize("setting", ["loop_time = 5", "loop_cpus = 0", "loop_mem = 0",
                                     "loop_mem = 1e9", 'loop_time = "1-00:00"'])  # fmt: skip
def test_impossible_loop_job_settings_are_refused(tmp_path, setting):
    lab = lab_at(tmp_path / "lab", f'kind = "slurm"\n{setting}')
    with pytest.raises(ConfigError, match=setting.split(" ")[0]):
        load_config(lab)


def test_a_planted_or_broken_record_is_not_believed(tmp_path):
    state = tmp_path / ".nightlab"
    state.mkdir()
    record = state / loop_job.RECORD
    assert loop_job.recorded(state) is None
    for text in ("{", '{"job_id": "12; scancel --user root"}', '["12"]', '{"job_id": ""}',
                 '{"job_id": "1' + "0" * 70_000 + '"}'):  # fmt: skip
        record.write_text(text)
        assert loop_job.recorded(state) is None, text
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps({"job_id": "7"}))
    record.unlink()
    record.symlink_to(real)
    assert loop_job.recorded(state) is None, "a link is not followed"
    record.unlink()
    record.write_text(json.dumps({"job_id": "7"}))
    assert loop_job.recorded(state)["job_id"] == "7"


def test_loop_job_mode_needs_slurms_own_job_id_to_agree(monkeypatch):
    monkeypatch.setenv(loop_job.ENV, "42")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert loop_job.this_job() is None  # set by hand outside a job: not a loop job
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert loop_job.this_job() is None
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert loop_job.this_job() == "42"
    monkeypatch.setenv(loop_job.ENV, "42 ")
    monkeypatch.setenv("SLURM_JOB_ID", "42 ")
    assert loop_job.this_job() is None


def nightlab(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIGHTLAB_PLAIN": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([*NIGHTLAB, *args], capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip


def test_start_slurm_needs_slurm_trials_and_no_dashboard(tmp_path):
    local = lab_at(tmp_path / "local", 'kind = "local"')
    out = nightlab("start", str(local), "--slurm")
    assert out.returncode != 0 and 'kind = "slurm"' in out.stderr
    assert "Traceback" not in out.stderr
    slurm = lab_at(tmp_path / "slurm")
    out = nightlab("start", str(slurm), "--slurm", "--dashboard")
    assert out.returncode != 0 and f"nightlab dashboard {slurm}" in out.stderr
    assert not (slurm / ".nightlab" / loop_job.RECORD).exists()


def test_start_slurm_without_sbatch_says_so(tmp_path):
    lab = lab_at(tmp_path / "lab")
    env = {**os.environ, "NIGHTLAB_PLAIN": "1", "PATH": str(tmp_path)}  # no sbatch on it
    out = subprocess.run([*NIGHTLAB, "start", str(lab), "--slurm"], capture_output=True,
                         text=True, timeout=60, env=env)  # fmt: skip
    assert out.returncode != 0 and "sbatch could not be run" in out.stderr
    assert "Traceback" not in out.stderr
