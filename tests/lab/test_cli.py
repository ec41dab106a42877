"""The command line a user types: clear errors that name the fix, never a traceback.
(The status contract and `init` through whole nights: tests/nights/test_cli_nights.py.)"""

from __future__ import annotations

import json

import pytest

from conftest import cli


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


def test_a_refused_sbatch_is_one_line_not_a_traceback(make_lab, tmp_path):
    """Every error a user can fix derives from nightlab.UserError and carries its exit
    status: SlurmError (once missing from a table of class names) included."""
    import os
    import subprocess

    from conftest import NIGHTLAB

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "scontrol", "sinfo"):
        fake = bin_dir / tool
        fake.write_text("#!/bin/sh\necho 'error: invalid partition specified: nope' >&2\nexit 1\n")
        fake.chmod(0o755)
    lab = make_lab(toml_extra='\n[executor]\nkind = "slurm"\npartition = "nope"\n')
    env = {**os.environ, "NIGHTLAB_PLAIN": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [*NIGHTLAB, "run", str(lab)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "sbatch refused trial 1" in proc.stderr and "invalid partition" in proc.stderr
    assert "Traceback" not in proc.stderr


# The tiny lab with luck planted: `lucky` adds to the score on seed 0 only, the seed of every
# worker trial's own (selection) run, never on the new seeds of its confirmation runs.
LUCKY = {"action": "run", "rationale": "lucky on its selection seed only", "params": {"lucky": 1.0}}
REAL = {"action": "run", "rationale": "a real improvement of +0.2", "params": {"boost": 0.2}}
HAIR = {"action": "run", "rationale": "a hair of luck on the best",
        "params": {"boost": 0.2, "lucky": 0.02}}  # fmt: skip


@pytest.fixture(scope="module")
def lucky(tmp_path_factory):
    """Trial 4 (lucky, 1.99 once) fails its confirmation (1.015 over seeds 1000, 1001);
    trial 7 (+0.2) is kept on its (1.205); trial 10's single 1.21 beats that figure but is
    one run picked for being high. Returns the lab and the output of `nightlab run`."""
    from conftest import TRIAL, build_lab

    trial = TRIAL.replace(
        'score = 1.0 + p.get("boost", 0.0)',
        'score = p.get("lucky", 0.0) * (1 if seed == 0 else 0.01) + 1.0 + p.get("boost", 0.0)',
    )
    assert trial != TRIAL
    knob = "\n[search.lucky]\nlow = 0.0\nhigh = 1.0\ndefault = 0.0\n"
    lab = build_lab(tmp_path_factory.mktemp("lucky") / "lab", decisions=[LUCKY, REAL, HAIR],
                    trial=trial, toml_extra=knob, max_trials=20, confirm_runs=2)  # fmt: skip
    return lab, cli("run", str(lab))


def test_the_leaderboard_json_names_the_metric_and_marks_single_runs(lucky):
    lab, _ = lucky
    board = json.loads(cli("leaderboard", str(lab), "--json").stdout)
    assert isinstance(board, list) and all(r["metric"] == "score" for r in board)
    assert [(r["rank"], r["trial"], r["verdict"], r["confirmed"]) for r in board] == [
        (1, 7, "kept", True),
        (2, 4, "not_confirmed", True),
        (3, 1, "baseline", True),
        (4, 10, "discarded", False),  # the highest figure, but a single run: last
    ]
    kept, lucky_one, _, single = board
    assert kept["objective"] == kept["confirmed_mean"] == pytest.approx(1.205)
    assert kept["n"] == 2 and kept["selection"] == 1.19 and kept["runs"] == [7, 8, 9]
    assert lucky_one["selection"] == 1.99 and lucky_one["confirmed_mean"] == pytest.approx(1.015)
    assert single["objective"] == single["selection"] == 1.21 > kept["objective"]
    assert single["n"] == 0 and single["confirmed_mean"] is None and single["sd"] is None


def test_the_leaderboard_table_shows_n_and_sd_and_marks_single_runs(lucky):
    lab, run = lucky
    text = cli("leaderboard", str(lab)).stdout
    assert "leaderboard — tiny · score: confirmed mean over new seeds, single runs last" in text
    header = next(line for line in text.splitlines() if "rank" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")][:7] == [
        "rank", "trial", "score", "± sd", "n", "selection", "verdict"
    ]  # fmt: skip
    cells = {
        int(row[0]): row
        for line in text.splitlines()
        if line.startswith("│") and (row := [c.strip() for c in line.strip("│ ").split("│")])
    }
    assert cells[1][:7] == ["1", "7", "1.205", "± 0.007071", "2", "1.19", "kept"]
    assert cells[2][:7] == ["2", "4", "1.015", "± 0.007071", "2", "1.99", "not_confirmed"]
    assert cells[4][:7] == ["4", "10", "1.21 (single run)", "", "—", "1.21", "discarded"]
    assert "best: trial 7 score 1.205 ± 0.007071 (n=2; selection run 1.19)" in run.stdout


def test_status_shows_the_best_as_its_confirmed_mean(lucky):
    lab, _ = lucky
    text = cli("status", str(lab)).stdout
    assert "kept 1, not confirmed 1)" in text
    assert "baseline score 1 ± 0.01 over 3 seed(s)" in text
    assert "best: trial 7 score 1.205 ± 0.007071 (n=2; selection run 1.19)" in text


def test_leaderboard_json_answers_the_same_without_building_the_typer_app(lucky):
    from typer.testing import CliRunner

    from nightlab.lab.cli import app

    lab, _ = lucky
    for args in (["--json"], ["--json", "--top", "2"], ["--top=3", "--json"]):
        fast = cli("leaderboard", str(lab), *args).stdout  # __main__'s fast path
        full = CliRunner().invoke(app, ["leaderboard", str(lab), *args])
        assert full.exit_code == 0 and json.loads(fast) == json.loads(full.stdout), args
    assert len(json.loads(cli("leaderboard", "--json", "--top", "2", str(lab)).stdout)) == 2
    wrong = cli("leaderboard", str(lab), "--json", "--top", "0", check=False)
    assert wrong.returncode == 2 and "--top" in wrong.stderr  # Typer explains it
