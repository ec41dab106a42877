"""What the attack tests share: a lab whose train.py turns hostile on one decision, the
night run, and the checks a user cares about afterwards (digests of what must not change,
links that point out of the record, processes the trial left alive).

The lab is conftest's tiny lab (`build_lab`) with its own train.py: honest (score = 1 +
boost + a seed offset) unless the replayed decision sets `mode = "attack"`; then it runs
the attack (Python, the body of `attack()`, with `C` the constants the test passes:
paths outside, a marker, a port), prints what it saw as `SEEN {json}` lines, and reports
an honest, low score (0.5, under the baseline's 0.99) that the ratchet must discard.

The contract the tests are written against (the sealed sandbox): a trial sees its own
worktree (its cwd), its own output folder (NIGHTLAB_METRICS' folder, NIGHTLAB_ARTIFACTS),
`[trial] share` read-only; private /tmp and /dev, its own PID namespace, no capabilities,
no network; not the lab's `.nightlab/`, the user's working tree nor the lab's `.git`. The
attacks do not rely on it: they try what a hostile trial would try on today's code too
(NIGHTLAB_LAB_DIR, walking up from the cwd, the paths a test hands it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import build_lab, rows, store_of

if shutil.which("bwrap") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("bubblewrap is missing: `make test` installs it (as root)")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

# Every attack may use these: where the trial can write, where the lab might be.
PRELUDE = r'''
import json, os, re, signal, socket, sqlite3, subprocess, sys, time
from pathlib import Path

def seen(**kw):
    print("SEEN " + json.dumps(kw, default=str), flush=True)

def tries(fn):
    """'ok', what fn returned (when not None), or the error's name and message."""
    try:
        out = fn()
        return "ok" if out is None else out
    except BaseException as exc:  # noqa: BLE001 -- an attack tries everything
        return f"{type(exc).__name__}: {exc}"[:300]

METRICS = Path(os.environ["NIGHTLAB_METRICS"])
ARTIFACTS = Path(os.environ.get("NIGHTLAB_ARTIFACTS") or METRICS.parent / "artifacts")
# every folder of its own the trial is told about: where an attack plants links
OUTDIRS = sorted({METRICS.parent, ARTIFACTS}
                 | {Path(os.environ[k]) for k in ("NIGHTLAB_TRIAL_DIR",) if os.environ.get(k)})

def labs():
    """Where the lab folder may be: NIGHTLAB_LAB_DIR, the path the test named (a guess an
    attacker could make), every folder above the cwd that holds a `.nightlab`."""
    found = [os.environ.get("NIGHTLAB_LAB_DIR"), C.get("lab")]
    found += [str(p) for p in Path.cwd().resolve().parents if (p / ".nightlab").is_dir()]
    out = []
    for f in found:
        if f and f not in out:
            out.append(f)
    return [Path(f) for f in out]

def write(path, text, mode=None):
    path = Path(path)
    path.write_text(text)
    if mode:
        path.chmod(mode)
'''

TRAIN = """{prelude}
C = {consts!r}

def attack():
{body}

p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
score = 1.0 + p.get("boost", 0.0) + 0.01 * ((seed * 7) % 3 - 1)
if p.get("mode") == "attack":
    attack()
    score = 0.5  # honest, and under the baseline: the ratchet must discard it
print(f"score={{score}}", flush=True)
"""

HONEST_BASELINE = 0.99  # seed 0: 1 + 0.01 * (0 - 1)
ATTACK_SCORE = 0.5


def honest_score(boost: float, seed: int) -> float:
    return 1.0 + boost + 0.01 * ((seed * 7) % 3 - 1)


def train_py(body: str, consts: dict[str, Any]) -> str:
    indented = "\n".join("    " + line if line.strip() else "" for line in body.splitlines())
    return TRAIN.format(prelude=PRELUDE, consts=consts, body=indented or "    pass")


def hostile_lab(
    path: Path,
    body: str,
    consts: dict[str, Any],
    *,
    before: int = 0,
    after: int = 2,
    toml_extra: str = "",
    trial_extra: str = "",
    command: str | None = None,
) -> Path:
    """A lab at `path`: one baseline run, `before` honest trials, the attack, `after`
    honest trials (each a new boost, so none is a repeat), then the worker stops."""
    boosts = iter([0.1 * (i + 1) for i in range(before + after)])
    decisions = [
        {"action": "run", "rationale": f"honest {i}", "params": {"boost": next(boosts)}}
        for i in range(before)
    ]
    decisions.append(
        {"action": "run", "rationale": "the hostile trial", "params": {"mode": "attack"}}
    )
    decisions += [
        {"action": "run", "rationale": f"honest after {i}", "params": {"boost": next(boosts)}}
        for i in range(after)
    ]
    lab = build_lab(
        path,
        decisions=decisions,
        max_trials=len(decisions) + 1,
        trial=train_py(body, {**consts, "lab": str(Path(path).resolve())}),
        modes=("attack",),
        toml_extra=toml_extra,
        baseline_repeats=1,
        trial_extra='sandbox = "bwrap"\n' + trial_extra,
    )
    # what the loop itself adds on its first start: fingerprints of .git see only the trial
    exclude = lab / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + ".nightlab/\n")
    if command:
        toml = lab / "nightlab.toml"
        toml.write_text(
            toml.read_text().replace('command = "python train.py"', f'command = "{command}"')
        )
    return lab


def night(lab: Path) -> tuple[dict | None, BaseException | None]:
    """Run the lab's night in this process: (its final status, None) or (None, the error):
    the tests check what escaped first, then that the night itself ended well."""
    from nightlab import Lab

    try:
        return Lab(lab).run(report=lambda line: None), None
    except Exception as exc:  # noqa: BLE001 -- reported by the test after the escape checks
        return None, exc


def trials(lab: Path) -> list:
    return rows(lab, "SELECT * FROM trials ORDER BY id")


def attack_row(lab: Path):
    """The hostile trial's row: the first to run with `mode = "attack"` (a later trial
    inherits the mode only when the attack got itself kept)."""
    return [t for t in trials(lab) if json.loads(t["params"]).get("mode") == "attack"][0]


def trial_dir(lab: Path, trial_id: int) -> Path:
    return Path(lab) / ".nightlab" / "trials" / str(int(trial_id))


def seen(lab: Path, trial_id: int) -> dict[str, Any]:
    """What the trial reported on its `SEEN {json}` lines, merged."""
    out: dict[str, Any] = {}
    log = trial_dir(lab, trial_id) / "stdout.log"
    if log.is_file() and not log.is_symlink():
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("SEEN "):
                out.update(json.loads(line[5:]))
    return out


def digest(path: Path) -> dict[str, Any]:
    """Every entry under `path` (itself included), never following a link: a file's
    sha256 and mode, a link's target, a folder's mode. Equal digests: nothing changed."""
    path = Path(path)
    out: dict[str, Any] = {}

    def one(p: Path) -> Any:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            return ("link", os.readlink(p))
        if stat.S_ISDIR(st.st_mode):
            return ("dir", stat.S_IMODE(st.st_mode))
        return ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))

    if not path.exists() and not path.is_symlink():
        return {".": None}
    out["."] = one(path)
    if out["."][0] == "dir":
        for root, dirs, names in os.walk(path, followlinks=False):
            for name in dirs + names:
                p = Path(root) / name
                out[str(p.relative_to(path))] = one(p)
    return out


def links_out_of(folder: Path) -> list[str]:
    """The symlinks under `folder` (not followed) whose target is outside it."""
    folder = Path(folder).resolve()
    bad = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            p = Path(root) / name
            if p.is_symlink():
                target = Path(os.path.normpath(Path(root) / os.readlink(p)))
                if not target.is_relative_to(folder) or not p.resolve().is_relative_to(folder):
                    bad.append(f"{p.relative_to(folder)} -> {os.readlink(p)}")
    return bad


def record_text(lab: Path) -> bytes:
    """Everything the lab's record holds as bytes: every row of the store and every regular
    file under `.nightlab/` (links are not followed)."""
    conn = sqlite3.connect(store_of(lab).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        parts = ["\n".join(conn.iterdump()).encode()]
    finally:
        conn.close()
    for root, _dirs, names in os.walk(Path(lab) / ".nightlab", followlinks=False):
        for name in names:
            p = Path(root) / name
            if p.is_file() and not p.is_symlink():
                parts.append(p.read_bytes())
    return b"\n".join(parts)


def alive_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds `marker` (zombies do not count)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in arg for arg in p.info["cmdline"] or []):
                out.append(p)
        except psutil.Error:
            continue
    return out


def wait_none_alive(marker: str, timeout: float = 5.0) -> list[psutil.Process]:
    """The processes holding `marker` still alive after up to `timeout` s (the loop may
    sweep a trial's leftovers in the background)."""
    deadline = time.time() + timeout
    while True:
        left = alive_with(marker)
        if not left or time.time() > deadline:
            return left
        time.sleep(0.1)


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL these processes (the test's own leftovers, by pid)."""
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
