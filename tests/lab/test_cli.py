"""The command line a user types: clear errors, the status contract, init."""

from __future__ import annotations

import json
import subprocess

from conftest import cli, status


def test_bad_config_fails_with_key_file_and_fix_and_writes_nothing(make_lab):
    lab = make_lab()
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("command =", "comand ="))
    proc = cli("run", str(lab), check=False)
    assert proc.returncode == 2
    assert "comand" in proc.stderr and "'command'" in proc.stderr and str(toml) in proc.stderr
    assert "missing required key [trial] command" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (lab / ".nightlab" / "state.db").exists()


def test_missing_lab_and_unknown_worker_are_explained(tmp_path, make_lab):
    proc = cli("run", str(tmp_path / "nowhere"), check=False)
    assert proc.returncode == 2 and "nightlab init" in proc.stderr
    lab = make_lab()
    proc = cli("run", str(lab), "--worker", "gpt-9", check=False)
    assert proc.returncode == 2 and "unknown worker 'gpt-9'" in proc.stderr


def test_status_json_contract_before_and_after_a_night(make_lab):
    lab = make_lab(max_trials=4)
    assert status(lab)["state"] == "new"
    cli("run", str(lab))
    st = status(lab)
    assert {"lab", "state", "heartbeat_age_s", "cycles", "trials", "best"} <= set(st)
    assert st["lab"] == "tiny" and st["state"] == "finished" and st["cycles"] == 4
    assert set(st["trials"]) >= {"total", "succeeded", "failed", "running", "kept"}
    assert st["best"]["trial"] >= 1 and set(st["best"]) >= {"trial", "objective", "params"}
    board = json.loads(cli("leaderboard", str(lab), "--json", "--top", "2").stdout)
    assert len(board) == 2 and board[0]["objective"] >= board[1]["objective"]
    text = cli("leaderboard", str(lab)).stdout
    assert "leaderboard" in text and "baseline" in text
    watch = cli("watch", str(lab), "--once").stdout
    assert "finished" in watch and "trial" in watch


def test_init_creates_a_lab_that_runs(tmp_path):
    lab = tmp_path / "new"
    cli("init", str(lab))
    assert (lab / ".git").is_dir() and (lab / "nightlab.toml").is_file()
    cli("run", str(lab), "--max-trials", "5")
    st = status(lab)
    assert st["state"] == "finished" and st["trials"]["succeeded"] == 5
    again = cli("init", str(lab), check=False)
    assert again.returncode == 2 and "not empty" in again.stderr
    git = subprocess.run(
        ["git", "status", "--porcelain"], cwd=lab, capture_output=True, text=True
    ).stdout
    assert ".nightlab" not in git


def test_a_folder_that_is_not_a_lab_is_named_as_such(tmp_path):
    for args in (
        ["status", str(tmp_path), "--json"],
        ["leaderboard", str(tmp_path)],
        ["status", str(tmp_path)],
    ):
        proc = cli(*args, check=False)
        assert proc.returncode == 2, args
        assert "no nightlab.toml" in proc.stderr and "nightlab init" in proc.stderr
        assert "Traceback" not in proc.stderr
