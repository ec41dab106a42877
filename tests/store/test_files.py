"""The one atomic write and the one log tail (nightlab.store.files)."""

from __future__ import annotations

import json
import os

import pytest

from nightlab.store import files
from nightlab.store.paths import LabPaths


def test_write_atomic_replaces_a_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    files.write_atomic(path, "new")
    assert path.read_text() == "new"
    files.write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_write_atomic_keeps_the_umask_mode(tmp_path):
    path = tmp_path / "params.json"
    files.write_atomic(path, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_link_planted_at_the_destination_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "trial" / "result.json"
    path.parent.mkdir()
    path.symlink_to(victim)
    files.write_json(path, {"id": 1})
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert json.loads(path.read_text()) == {"id": 1}


def test_links_planted_at_temporary_names_are_never_written_through(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "trial"
    folder.mkdir()
    path = folder / "metrics.jsonl"
    # the names the old writers used, and the first name the writer will draw
    tokens = iter(["aaaaaaaaaaaa", "cccccccccccc", "bbbbbbbbbbbb"])
    monkeypatch.setattr(files, "_token", lambda: next(tokens))
    planted = [
        folder / "metrics.jsonl.tmp",
        folder / "metrics.tmp",
        folder / ".metrics.jsonl.aaaaaaaaaaaa.tmp",
    ]
    for link in planted:
        link.symlink_to(victim)
    (folder / ".metrics.jsonl.cccccccccccc.tmp").symlink_to(tmp_path / "nowhere")  # dangling
    files.write_atomic(path, "line\n")
    assert victim.read_text() == "precious"
    assert path.read_text() == "line\n" and not path.is_symlink()
    assert all(link.is_symlink() for link in planted)  # left alone, not followed
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "env.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError):
        files.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.json"]


def test_write_json_formats_as_the_old_writers_did(tmp_path):
    path = tmp_path / "a.json"
    data = {"x": 1.5, "nan": float("nan"), "p": tmp_path}
    files.write_json(path, data)
    assert path.read_text() == json.dumps(data, indent=2, default=str, allow_nan=True)
    files.write_json(path, [1], indent=1, newline=True)
    assert path.read_text() == "[\n 1\n]\n"


def test_tail_reads_the_end_of_a_file(tmp_path):
    log = tmp_path / "out.log"
    assert files.tail(log) == ""  # missing
    log.write_bytes(b"".join(b"line %d\r\n" % i for i in range(100)) + b"\xff end")
    assert files.tail(log, 2) == "line 99\n\ufffd end"
    assert files.tail(log, max_bytes=5) == "\ufffd end"
    assert files.tail(log).endswith("line 98\nline 99\n\ufffd end")


def test_tail_does_not_read_through_a_link_or_a_pipe(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("key")
    (tmp_path / "stderr.log").symlink_to(secret)
    assert files.tail(tmp_path / "stderr.log") == ""
    os.mkfifo(tmp_path / "stdout.log")
    assert files.tail(tmp_path / "stdout.log") == ""  # returns at once, no writer needed


def test_a_trial_logs_tail_names_each_log_and_redacts_secrets(tmp_path, monkeypatch):
    """What the store keeps of a failed trial (the local executor's outcome uses it)."""
    monkeypatch.setenv("SOME_API_KEY", "sk-secret-value-123")
    trial = LabPaths(tmp_path).trial(3)
    trial.mkdir(parents=True)
    assert files.trial_logs_tail(trial) == ""
    (trial / "stdout.log").write_text("".join(f"out {i}\n" for i in range(60)))
    (trial / "stderr.log").write_text("Traceback\nboom sk-secret-value-123\n")
    got = files.trial_logs_tail(trial)
    assert got.startswith("--- stderr.log (last 2 lines) ---\nTraceback\nboom [redacted")
    assert "--- stdout.log (last 40 lines) ---\nout 20\n" in got
    assert files.trial_logs_tail(trial, 1).endswith("--- stdout.log (last 1 lines) ---\nout 59")
    (trial / "stderr.log").unlink()
    (trial / "stderr.log").symlink_to(tmp_path / "secret.txt")  # a trial's planted link
    (tmp_path / "secret.txt").write_text("the user's secret\n")
    assert "secret" not in files.trial_logs_tail(trial)
