"""The disk fills up in the middle of a night; the state folder is read-only at a restart.

Expected: the night stops with a clear message naming the problem, never a raw traceback;
the store stays intact (integrity_check ok, the completed trials still there) and the
night resumes once the disk has room again. Tests run as root, who ignores permissions,
so the lab lives on a small tmpfs (filled up mid-night) and `.nightlab/` is made read-only
by a read-only bind mount. Without root (or mount) they are skipped; under CI=true they fail.
(A bind mount cannot turn read-only under a running loop: the kernel refuses with EBUSY
while files are open for writing, so the read-only case is a restart.)
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    assert_store_intact,
    assert_trials_recorded_once,
    fault_lab,
    lab_processes,
    need_root_mounts,
    reap,
    umount,
)

from conftest import cli, rows, spawn_loop, try_rows, wait_until

pytestmark = pytest.mark.slow

DECISIONS = [
    {
        "action": "run",
        "rationale": f"replayed decision {i}: push boost to {i / 10:.1f}",
        "params": {"boost": round(i / 10, 1), "sleep": 0.2},
    }
    for i in range(1, 40)
]


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system says it is full (unbuffered: a buffered
    file would fail again when closed, with what the full disk did not take)."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass


def plain_message(out: str, *words: str) -> bool:
    low = out.lower()
    return any(w in low for w in words)


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A night on an 8 MB tmpfs that is filled up after 5 trials; then the space comes
    back and the night is run again."""
    base = tmp_path_factory.mktemp("disk")
    need_root_mounts(base)
    disk = base / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    lab = fault_lab(disk / "lab", decisions=DECISIONS, max_trials=60)
    try:
        loop = spawn_loop(lab, log=base / "full.log")
        five = "SELECT COUNT(*) FROM trials WHERE status='succeeded' HAVING COUNT(*) >= 5"
        assert wait_until(lambda: try_rows(lab, five), 60, proc=loop), base / "full.log"
        fill(disk / "filler")
        began = time.time()
        try:
            code = loop.wait(timeout=60)
        except subprocess.TimeoutExpired:
            loop.kill()
            code = "still running 60 s after the disk filled up"
        took = time.time() - began
        out = (base / "full.log").read_text(errors="replace")
        during = {
            "integrity": rows(lab, "PRAGMA integrity_check"),
            "succeeded": rows(lab, "SELECT id FROM trials WHERE status='succeeded'"),
            "status": cli("status", str(lab), "--json", check=False),
        }
        (disk / "filler").unlink()
        time.sleep(1)  # a trial the dead loop left running ends on its own
        again = spawn_loop(lab, "--max-trials", "12", log=base / "again.log")
        again_code = again.wait(timeout=120)
        yield {
            "lab": lab,
            "code": code,
            "took": took,
            "out": out,
            "during": during,
            "again": (again_code, (base / "again.log").read_text(errors="replace")),
        }
    finally:
        reap(lab_processes(lab))
        umount(disk)


def test_a_full_disk_stops_the_night_and_keeps_the_store(full_disk):
    code, took, during = full_disk["code"], full_disk["took"], full_disk["during"]
    assert isinstance(code, int) and code != 0, code  # the night stopped, it did not hang
    assert took < 30
    assert during["integrity"] == [("ok",)]
    assert len(during["succeeded"]) >= 5  # the completed trials are still there
    st = during["status"]  # a read-only view still answers on the full disk
    assert st.returncode == 0 and '"state": "crashed"' in st.stdout, st.stderr


def test_the_night_resumes_once_the_disk_has_room(full_disk):
    lab = full_disk["lab"]
    code, out = full_disk["again"]
    assert code == 0, out[-3000:]
    assert rows(lab, "SELECT state FROM runs ORDER BY id DESC LIMIT 1") == [("finished",)]
    assert_store_intact(lab)
    assert_trials_recorded_once(lab)
    counted = (
        "SELECT COUNT(*) FROM trials WHERE NOT (status IN ('killed', 'timeout') "
        "AND reason LIKE 'interrupted%')"
    )
    assert rows(lab, counted) == [(12,)]  # a trial cut short by the dead loop does not count
    assert rows(
        lab, "SELECT COUNT(*) FROM trials WHERE kind='baseline' AND status='succeeded'"
    ) == [(3,)]


def test_a_full_disk_is_named_in_one_clear_line(full_disk):
    out, lab = full_disk["out"], full_disk["lab"]
    assert "Traceback" not in out, out[-3000:]
    assert plain_message(out, "disk is full", "no space left", "disk full")
    assert full_disk["code"] in (1, 2)
    runs = rows(lab, "SELECT state, end_reason FROM runs ORDER BY id")
    assert runs[0][0] != "running"  # the dead run was closed (or marked crashed) as it died


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A night of 4 trials, then `.nightlab/` bind-mounted read-only over itself."""
    base = tmp_path_factory.mktemp("readonly")
    need_root_mounts(base)
    lab = fault_lab(base / "lab", decisions=DECISIONS, max_trials=4)
    assert spawn_loop(lab, log=base / "first.log").wait(timeout=120) == 0
    state = lab / ".nightlab"
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        assert not _writable(state)
        views = {
            "run": cli("run", str(lab), "--max-trials", "6", check=False),
            "start": cli("start", str(lab), "--max-trials", "6", check=False),
            "status": cli("status", str(lab), "--json", check=False),
            "leaderboard": cli("leaderboard", str(lab), check=False),
        }
    finally:
        umount(state)
    try:
        yield lab, views
    finally:
        reap(lab_processes(lab))


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_a_read_only_state_folder_leaves_the_store_and_the_views_intact(read_only):
    lab, views = read_only
    assert views["status"].returncode == 0 and '"state": "finished"' in views["status"].stdout
    assert views["leaderboard"].returncode == 0 and "leaderboard" in views["leaderboard"].stdout
    assert views["run"].returncode != 0  # it could not run, and said so somehow
    assert_store_intact(lab)
    assert assert_trials_recorded_once(lab) == [1, 2, 3, 4]
    # writable again: the night goes on where it was
    cli("run", str(lab), "--max-trials", "6")
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status='succeeded'") == [(6,)]


@pytest.mark.parametrize("command", ["run", "start"])
def test_a_read_only_state_folder_is_named_in_one_clear_line(read_only, command):
    _, views = read_only
    proc = views[command]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 2
    assert plain_message(proc.stderr, "read-only", "read only")
