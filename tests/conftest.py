"""What every test folder shares (imported as `from conftest import ...`):

- the lab: `make_lab` (fixture) / `build_lab(path, ...)`: a tiny lab whose trials are real
  subprocesses taking milliseconds; `TRIAL`, `TOML`, `MISBEHAVE` are its parts;
- the config: `make_config(...)`, a Config built in memory;
- git: `git(cwd, *args)`, and the `isolated_git` fixture (no machine config, a test identity);
- the store: the `store` fixture (a migrated, empty Store); `rows(lab, sql, *args)`
  read-only rows (tuples that also answer row["column"]),
  `try_rows` while a loop may still be making the store, `execute` to change it on purpose;
- the command line and the loop: `cli`, `status`, `spawn_loop`, `wait_for`, `wait_until`.

Layout: tests/<room>/ tests one room's code (config and ratchet, single files, at the top
like the package face's trial helpers); tests/nights/ runs whole nights; tests/faults/ and
tests/slurm/ are the two special suites of nights (fault injection; a real Slurm cluster).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nightlab.config import Config

NIGHTLAB = [sys.executable, "-m", "nightlab"]


# ---------------------------------------------------------------------------------- the lab

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

[ratchet]
baseline_repeats = {baseline_repeats}
confirm_runs = {confirm_runs}

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


def lab_toml(
    *,
    worker: str = "search",
    max_trials: int = 6,
    budget: float = 60,
    tracking: bool = False,
    trial_extra: str = "",
    knobs: str = "",
    confirm_runs: int = 0,
    baseline_repeats: int = 3,
) -> str:
    """The tiny lab's nightlab.toml (`trial_extra` goes into [trial], `knobs` after the
    `boost` knob). `confirm_runs` is 0 (keep on one run) unless a test asks: the tests of
    everything but the ratchet count their trials exactly; tests/nights/test_confirm.py, the
    noise lab and the demo test run the default screen → confirm → keep."""
    return TOML.format(
        confirm_runs=confirm_runs,
        baseline_repeats=baseline_repeats,
        budget=budget,
        max_trials=max_trials,
        worker=worker,
        tracking=str(tracking).lower(),
        trial_extra=trial_extra,
        knobs=knobs,
    )


def build_lab(
    path: Path,
    *,
    worker: str = "search",
    decisions: list[dict] | None = None,
    max_trials: int = 6,
    budget: float = 60,
    sleep: float = 0.0,
    tracking: bool = False,
    trial_extra: str = "",
    toml_extra: str = "",
    trial: str = TRIAL,
    modes: Sequence[str] = (),
    confirm_runs: int = 0,
    baseline_repeats: int = 3,
) -> Path:
    """A tiny lab at `path` (made, with its parents): `trial` as train.py, IDEA.md, its
    nightlab.toml and `git init`. With `decisions`, the worker replays them from
    decisions.jsonl and the misbehaving knobs (`sleep`, `mode`: `MISBEHAVE`, plus `modes`)
    are declared. `toml_extra` is appended to nightlab.toml."""
    lab = Path(path)
    lab.mkdir(parents=True)
    (lab / "train.py").write_text(trial)
    (lab / "IDEA.md").write_text("Maximise score.\n")
    knobs = ""
    if decisions is not None:
        (lab / "decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
        worker = "replay:decisions.jsonl"
        knobs = MISBEHAVE.format(sleep=sleep)
        if modes:
            extra = ", ".join(f'"{m}"' for m in modes)
            knobs = knobs.replace('"silent"]', f'"silent", {extra}]')
    text = lab_toml(
        worker=worker,
        max_trials=max_trials,
        budget=budget,
        tracking=tracking,
        trial_extra=trial_extra,
        knobs=knobs,
        confirm_runs=confirm_runs,
        baseline_repeats=baseline_repeats,
    )
    (lab / "nightlab.toml").write_text(text + toml_extra)
    subprocess.run(["git", "init", "-q"], cwd=lab, check=True)
    return lab


@pytest.fixture
def make_lab(tmp_path: Path) -> Callable[..., Path]:
    """`make_lab(name="lab", **build_lab's options)`: a tiny lab in this test's tmp_path."""

    def make(*, name: str = "lab", **options: Any) -> Path:
        return build_lab(tmp_path / name, **options)

    return make


@pytest.fixture
def store(tmp_path: Path):
    """A migrated, empty store at `tmp_path/lab/.nightlab/state.db` (closed afterwards)."""
    from nightlab.store.db import Store

    made = Store(tmp_path / "lab" / ".nightlab" / "state.db")
    made.migrate()
    yield made
    made.close()


# ------------------------------------------------------------------------------- the config
def make_config(
    metric: str = "score",
    direction: str = "maximize",
    *,
    name: str = "t",
    command: str = "python train.py",
    **sections: Any,
) -> Config:
    """A Config built in memory (no nightlab.toml, no files checked): the required keys
    filled in, every other section given by name (`search={...}`, `ratchet={...}`); a
    `trial={...}` adds to the [trial] command."""
    from nightlab.config import Config

    trial = {"command": command, **sections.pop("trial", {})}
    return Config.model_validate(
        {
            "lab": {"name": name},
            "objective": {"metric": metric, "direction": direction},
            "trial": trial,
            **sections,
        }
    )


# -------------------------------------------------------------------------------------- git
def git(cwd: Path, *args: str, check: bool = True) -> str:
    """`git ARGS` in `cwd` as a test user; its stdout, as it is. A failure is an
    AssertionError naming the command and git's complaint, unless `check=False`."""
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {cwd} -> {proc.returncode}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Git that ignores the machine's config, never finds a repository above tmp_path and
    commits as a test user."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test User")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "user@example.com")


# -------------------------------------------------------------------------------- the store
class Row(tuple):
    """A row of the store: a tuple (it compares, unpacks and indexes like one) that also
    answers `row["column"]`, `row.keys()` and `dict(row)`."""

    columns: tuple[str, ...]

    def __new__(cls, cursor: sqlite3.Cursor, values: tuple) -> Row:
        row = super().__new__(cls, values)
        row.columns = tuple(d[0] for d in cursor.description)
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self.columns.index(key))
        return super().__getitem__(key)

    def keys(self) -> tuple[str, ...]:
        return self.columns


def store_of(lab: Path) -> Path:
    return Path(lab) / ".nightlab" / "state.db"


def connect(lab: Path) -> sqlite3.Connection:
    """A read-only connection to the lab's store (never creates it, never writes)."""
    db = store_of(lab).resolve()
    conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=30)
    conn.row_factory = Row
    return conn


def rows(lab: Path, sql: str, *args: object) -> list[Row]:
    """The rows `sql` selects from the lab's store."""
    conn = connect(lab)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def try_rows(lab: Path, sql: str, *args: object) -> list[Row] | None:
    """`rows`, or None while the store does not exist yet or its schema is being made."""
    if not store_of(lab).is_file():
        return None
    try:
        return rows(lab, sql, *args)
    except sqlite3.OperationalError:
        return None


def execute(lab: Path, sql: str, *args: object) -> None:
    """Change the lab's store on purpose (to leave what a crash would), committed."""
    conn = sqlite3.connect(store_of(lab))
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


# ------------------------------------------------------------------- the command line, loops
def cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    proc = subprocess.run(
        [*NIGHTLAB, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nightlab {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def status(lab: Path) -> dict:
    return json.loads(cli("status", str(lab), "--json").stdout)


def sigterm_timed(proc: subprocess.Popen, timeout: float) -> tuple[str, str, float]:
    """SIGTERM `proc` (it is killed afterwards, whatever happened); (stdout, stderr, seconds it
    took to exit)."""
    import signal

    try:
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
        return out, err, time.monotonic() - sent
    finally:
        proc.kill()


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.002,
    proc: subprocess.Popen | None = None,
) -> object:
    """Poll until `predicate()` is truthy (returns it), `proc` exits or `timeout` passes
    (returns None: the caller's assertion says what was awaited)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(interval)
    return None


def spawn_loop(
    lab: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python -m nightlab run LAB ARGS` as our own child, in its own session (so that
    killing its group takes its git children too, never this test)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [*NIGHTLAB, "run", str(lab), *args],
            env={**os.environ, "NIGHTLAB_PLAIN": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log:
            out.close()
