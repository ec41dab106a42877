"""The command line a user types: clear errors that name the fix, never a traceback.
(The status contract and `init` through whole nights: tests/nights/test_cli_nights.py.)"""

from __future__ import annotations

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
