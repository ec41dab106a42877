"""The lab's Optuna study file under attack: a journal that is a link, a pipe, a folder,
unreadable or read-only (as an unprivileged user), corrupt in the middle, left locked, cut
at any byte by a SIGKILL; a direction flipped; the mirror's sync settling every store trial
exactly once in the state it ended in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from nightlab.loop.lines import Lines
from nightlab.loop.pruning import Pruning
from nightlab.store.study import LabStudy, study_name

from conftest import make_config

SEARCH = {"lr": {"low": 1e-4, "high": 1.0, "log": True, "default": 0.01}}


def cfg(direction="minimize"):
    return make_config("loss", direction, search=SEARCH)


def row(trial_id, status="succeeded", objective=0.5, kind="trial", params=None):
    return types.SimpleNamespace(id=trial_id, kind=kind, status=status,
                                 objective=objective, params=params or {"lr": 0.01})  # fmt: skip


class Night:
    def __init__(self, state, config, stored=()):
        self.state, self.cfg, self.run_id, self.lines = state, config, 1, []
        self.store = types.SimpleNamespace(trials=lambda *a: list(stored))
        self.report = Lines(self.lines.append)  # the loop's: a line, or .warning(line)

    def event(self, kind, /, **data):
        pass


def open_within(night, seconds=20.0):
    """Pruning.open, which must neither raise nor hang (a pipe blocks a plain open)."""
    p = Pruning(night, None)
    done = threading.Thread(target=p.open, args=(None,), daemon=True)
    done.start()
    done.join(seconds)
    assert not done.is_alive(), f"opening the study hung over {seconds} s"
    return p


def by_store_id(study):
    out: dict[int, list] = {}
    for t in study.study.get_trials(deepcopy=False):
        out.setdefault(t.user_attrs.get("nightlab_trial"), []).append(t.state.name)
    return out


# ------------------------------------------------------------------ hostile files
def _link(path):
    path.symlink_to(path.parent / "elsewhere")


def _fifo(path):
    os.mkfifo(path)


def _folder(path):
    path.mkdir()


def _corrupt_middle(path):
    s = LabStudy(path.parent, cfg())
    s.begin(1, "trial", {"lr": 0.01})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:1], b'{"op_code": 4, "trial_id": \n', *lines[1:]]))


def _foreign_json(path):
    path.write_bytes(b'[1, 2]\n{"op_code": 99}\n"text"\n')


def _lock_folder(path):
    (path.parent / f"{path.name}.lock").mkdir()


@pytest.mark.parametrize("make", [_link, _fifo, _folder, _corrupt_middle, _foreign_json,
                                  _lock_folder])  # fmt: skip
def test_a_journal_that_cannot_be_a_study_costs_pruning_with_one_line(tmp_path, make):
    make(tmp_path / "optuna.journal")
    night = Night(tmp_path, cfg(), [row(1)])
    p = open_within(night)
    assert p.study is None and not p.active
    assert len(night.lines) == 1, night.lines
    assert "no pruning this night" in night.lines[0] and "optuna.journal" in night.lines[0]


def test_a_stale_lock_left_by_a_killed_writer_is_removed_at_open(tmp_path):
    LabStudy(tmp_path, cfg())
    (tmp_path / "optuna.journal.lock").write_text("")
    night = Night(tmp_path, cfg(), [row(1)])
    started = time.monotonic()
    p = open_within(night)
    assert time.monotonic() - started < 5 and p.study is not None
    assert night.lines == ["Optuna study: removed a stale lock optuna.journal.lock"]


def test_a_lock_left_mid_night_by_another_writer_holds_the_loop_a_few_seconds_only(tmp_path):
    study = LabStudy(tmp_path, cfg())
    study.begin(1, "trial", {"lr": 0.01})
    (tmp_path / "optuna.journal.lock").write_text("")  # optuna-dashboard killed mid-write
    started = time.monotonic()
    study.report(1, 0, 1.0)
    assert time.monotonic() - started < 10, "the loop watches no trial while it waits"
    assert study.steps(1) == {0}


def test_a_direction_flipped_between_nights_starts_its_own_study(tmp_path):
    low = LabStudy(tmp_path, cfg("minimize"))
    low.begin(1, "trial", {"lr": 0.01})
    low.report(1, 0, 0.1)
    low.finish(row(1, objective=0.1))
    high = LabStudy(tmp_path, cfg("maximize"))
    assert high.study.study_name == study_name(cfg("maximize")) != low.study.study_name
    assert high.study.trials == [], "curves of the other direction are no reference"
    high.sync([row(1, objective=0.1)])
    assert [t.intermediate_values for t in high.study.trials] == [{}]
    again = LabStudy(tmp_path, cfg("minimize"))
    assert again.study.trials[0].intermediate_values == {0: 0.1}


# ------------------------------------------------------------------ the mirror
def test_sync_settles_what_a_killed_loop_left_exactly_once(tmp_path):
    s = LabStudy(tmp_path, cfg())
    s.begin(1, "baseline", {"lr": 0.01})  # ended while no loop watched it
    s.begin(2, "trial", {"lr": 0.02})  # still running: re-attached next
    s.study.ask()  # asked by the search worker, never launched
    s.begin(3, "trial", {"lr": 0.03})  # recorded killed when the loop restarted
    stored = [
        row(1, kind="baseline", objective=0.4), row(2, status="running"),
        row(3, status="killed", objective=None), row(4, status="pruned", objective=None),
        row(5, objective=float("nan")), row(6, objective=0.3, params={"lr": 5.0}),
        row(7, kind="confirm"),
    ]  # fmt: skip
    again = LabStudy(tmp_path, cfg())
    counts = again.sync(stored)
    assert counts == {"told": 2, "added": 3, "failed": 1}
    assert by_store_id(again) == {
        1: ["COMPLETE"], 2: ["RUNNING"], None: ["FAIL"], 3: ["FAIL"], 4: ["PRUNED"],
        5: ["FAIL"], 6: ["COMPLETE"],
    }  # fmt: skip
    assert again.sync(stored) == {"told": 0, "added": 0, "failed": 0}
    third = LabStudy(tmp_path, cfg())
    assert third.sync(stored) == {"told": 0, "added": 0, "failed": 0}
    six = [t for t in third.study.trials if t.user_attrs.get("nightlab_trial") == 6][0]
    assert six.params == {}, "params outside the clamps are no point of the space"


def test_a_journal_cut_at_any_point_by_a_sigkill_settles_every_store_trial_once(tmp_path):
    src = tmp_path / "night"
    s = LabStudy(src, cfg()) if src.mkdir() is None else None
    s.begin(1, "baseline", {"lr": 0.01})
    for step in range(3):
        s.report(1, step, 1.0 - step / 10)
    s.finish(row(1, kind="baseline", objective=0.8))
    asked = s.study.ask({"lr": s.space["lr"]}).number
    s.begin(2, "trial", {"lr": 0.5}, asked)
    s.report(2, 0, 2.0)
    data = (src / "optuna.journal").read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    cuts = sorted({*ends, *(e - 7 for e in ends if e > 7)})
    stored = [row(1, kind="baseline", objective=0.8), row(2, status="killed", objective=None)]
    for cut in cuts:
        state = tmp_path / f"cut{cut}"
        state.mkdir()
        (state / "optuna.journal").write_bytes(data[:cut])
        night = Night(state, cfg(), stored)
        p = open_within(night)
        assert p.study is not None, (cut, night.lines)
        ids = by_store_id(p.study)
        assert ids[1] == ["COMPLETE"] and ids[2] == ["FAIL"], (cut, ids)
        assert all(state != "RUNNING" for states in ids.values() for state in states)
        shutil.rmtree(state)


def test_a_lab_with_many_trials_is_mirrored_at_its_first_start_one_line_each(tmp_path):
    # a lab upgraded with thousands of trials: each fsynced line costs the first start
    stored = [row(i, objective=i / 1000) for i in range(1, 501)]
    journal = tmp_path / "optuna.journal"
    s = LabStudy(tmp_path, cfg())
    before = journal.read_bytes().count(b"\n")
    assert s.sync(stored)["added"] == 500
    assert journal.read_bytes().count(b"\n") - before == 500
    assert set(by_store_id(LabStudy(tmp_path, cfg()))) == set(range(1, 501))


# ------------------------------------------------------------------ permissions
AS_NOBODY = """
import site, sys, types
site.addsitedir({site!r})
sys.path.insert(0, {tests!r})
from conftest import make_config
from pathlib import Path
from nightlab.loop.lines import Lines
from nightlab.loop.pruning import Pruning
lines = []
night = types.SimpleNamespace(
    state=Path({state!r}), cfg=make_config("loss", "minimize"), run_id=1,
    report=Lines(lines.append), event=lambda *a, **k: None,
    store=types.SimpleNamespace(trials=lambda *a: []),
)
p = Pruning(night, None)
p.open(None)
print(p.study is None, len(lines), lines[0] if lines else "")
"""


def nobody_python(site):
    """An interpreter `nobody` can run with this venv's packages (the venv's own may live
    under /root, closed to others: then the system's of the same version)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    probe = f"import site; site.addsitedir({site!r}); import nightlab, optuna"
    for python in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if python and subprocess.run(["runuser", "-u", "nobody", "--", python, "-c", probe],
                                     capture_output=True).returncode == 0:  # fmt: skip
            return python
    return None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
@pytest.mark.parametrize("mode", [0o000, 0o444])
def test_an_unreadable_or_read_only_journal_as_an_unprivileged_user(mode):
    site = sysconfig.get_paths()["purelib"]
    python = nobody_python(site)
    if python is None:
        pytest.skip(f"`nobody` can run no interpreter with {site}")
    top = Path(tempfile.mkdtemp(prefix="nightlab-nobody-"))  # pytest's tmp is closed to others
    try:
        os.chmod(top, 0o755)
        state = top / "state"
        state.mkdir()
        LabStudy(state, make_config("loss", "minimize"))
        journal = state / "optuna.journal"
        for path in (state, journal):
            os.chown(path, 65534, 65534)
        journal.chmod(mode)
        tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        script = textwrap.dedent(AS_NOBODY.format(site=site, tests=tests, state=str(state)))
        out = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", script], capture_output=True,
            text=True, timeout=120, cwd=top,
        )  # fmt: skip
    finally:
        shutil.rmtree(top)
    assert out.returncode == 0, out.stderr[-2000:]
    gone, count, line = out.stdout.strip().split(" ", 2)
    assert gone == "True" and count == "1", out.stdout
    assert "PermissionError" in line and "no pruning this night" in line
