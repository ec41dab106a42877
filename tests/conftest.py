"""Shared fixtures: tiny labs whose trials are real subprocesses taking milliseconds."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

NIGHTLAB = [sys.executable, "-m", "nightlab"]

# The trial: score = 1 + boost + EXTRA + a seed-dependent offset (-0.01, 0, +0.01), so the
# baseline's σ over seeds 0,1,2 is exactly 0.01. `mode` makes it misbehave on request.
TRIAL = """
import json, math, os, subprocess, sys, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
EXTRA = 0.0
seed = int(os.environ["NIGHTLAB_SEED"])
score = 1.0 + p.get("boost", 0.0) + EXTRA + 0.01 * ((seed * 7) % 3 - 1)
mode = p.get("mode", "ok")
print("starting", flush=True)
time.sleep(p.get("sleep", float(os.environ.get("TEST_TRIAL_SLEEP", "0"))))
if mode == "hang":
    time.sleep(600)
if mode == "nan":
    print("score=nan", flush=True)
    time.sleep(600)
if mode == "crash":
    sys.exit("boom: the trial crashed on purpose")
if mode == "orphan":
    subprocess.Popen(["sleep", "300", "nightlab-test-orphan"])
if mode == "silent":
    sys.exit(0)
print(f"score={score}", flush=True)
"""

TOML = """
[lab]
name = "tiny"
brief = "IDEA.md"

[objective]
metric = "score"
direction = "maximize"

[trial]
command = "python train.py"
budget_seconds = {budget}
editable = ["train.py"]
{trial_extra}

[search.boost]
low = 0.0
high = 5.0
default = 0.0
{knobs}
[budget]
max_trials = {max_trials}

[agents]
worker = "{worker}"

[report]
auto = false

[tracking]
enabled = {tracking}
"""

# Knobs only replayed decisions use: a search over them would sample hangs and crashes.
MISBEHAVE = """
[search.sleep]
low = 0.0
high = 30.0
default = {sleep}

[search.mode]
choices = ["ok", "hang", "nan", "crash", "orphan", "silent"]
default = "ok"
"""


@pytest.fixture
def make_lab(tmp_path: Path) -> Callable[..., Path]:
    def make(
        *,
        worker: str = "search",
        decisions: list[dict] | None = None,
        max_trials: int = 6,
        budget: float = 60,
        sleep: float = 0.0,
        tracking: bool = False,
        trial_extra: str = "",
        name: str = "lab",
    ) -> Path:
        lab = tmp_path / name
        lab.mkdir()
        (lab / "train.py").write_text(TRIAL)
        (lab / "IDEA.md").write_text("Maximise score.\n")
        if decisions is not None:
            (lab / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
            worker = "replay:decisions.jsonl"
        (lab / "nightlab.toml").write_text(
            TOML.format(
                budget=budget,
                sleep=sleep,
                max_trials=max_trials,
                worker=worker,
                tracking=str(tracking).lower(),
                trial_extra=trial_extra,
                knobs=MISBEHAVE.format(sleep=sleep) if decisions is not None else "",
            )
        )
        subprocess.run(["git", "init", "-q"], cwd=lab, check=True)
        return lab

    return make


def cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    proc = subprocess.run(
        [*NIGHTLAB, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nightlab {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def rows(lab: Path, sql: str) -> list[sqlite3.Row]:
    """Rows of the lab's store (read-only use in assertions)."""
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def status(lab: Path) -> dict:
    return json.loads(cli("status", str(lab), "--json").stdout)


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
