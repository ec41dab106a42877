"""The command line through whole nights: the `status --json` contract before and after a
night, and `init` making a lab that runs."""

from __future__ import annotations

import json

from conftest import cli, git, rows, status


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
    # what is proven first: the baseline's mean over 3 seeds, then the kept single run
    assert len(board) == 2 and board[0]["confirmed"] and not board[1]["confirmed"]
    assert board[0]["n"] == 3 and board[1]["verdict"] == "kept" and board[1]["n"] == 0
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
    confirmations = rows(lab, "SELECT count(*) FROM trials WHERE kind = 'confirm'")[0][0]
    assert st["state"] == "finished" and st["trials"]["succeeded"] == 5 + confirmations
    again = cli("init", str(lab), check=False)
    assert again.returncode == 2 and "not empty" in again.stderr
    assert ".nightlab" not in git(lab, "status", "--porcelain")
