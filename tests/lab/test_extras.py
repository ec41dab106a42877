"""Optional extras (issue 19): a lab that selects a feature whose extra is not installed fails
at once, before its baseline, with one line naming the `pip install`; a search-only night
needs none of them; `nightlab --help` imports none of them; the environment nightlab reads
(pydantic-settings) refuses a bad value with one line naming the variable.

"Not installed" is made real for the `nightlab` subprocess: a sitecustomize.py on its
PYTHONPATH puts a finder first on sys.meta_path that raises ModuleNotFoundError for the
blocked top-level packages, as Python does for a package that is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NIGHTLAB, TRIAL, lab_toml, rows

OPTIONAL = ("pydantic_ai", "openai", "anthropic", "submitit", "fastapi", "uvicorn",
            "sse_starlette", "apprise")  # fmt: skip
BLOCKER = """
import os, sys

BLOCKED = set(os.environ.get("NIGHTLAB_TEST_BLOCKED", "").split(","))


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


@pytest.fixture
def without(tmp_path: Path):
    """`without(*modules)(*args)`: the nightlab CLI run with those packages uninstalled."""
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)

    def runner(*blocked: str, env: dict[str, str] | None = None):
        def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
            full = {**os.environ, "NIGHTLAB_PLAIN": "1", "PYTHONPATH": path,
                    "NIGHTLAB_TEST_BLOCKED": ",".join(blocked), **(env or {})}  # fmt: skip
            return subprocess.run([*NIGHTLAB, *args], capture_output=True, text=True,
                                  timeout=timeout, env=full)  # fmt: skip

        return run

    return runner


def tiny(tmp_path: Path, *, agents: str = "", extra: str = "") -> Path:
    """The conftest's tiny lab; `agents` goes into [agents], `extra` at the end."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "train.py").write_text(TRIAL)
    (lab / "IDEA.md").write_text("Maximise score.\n")
    text = lab_toml(max_trials=2, baseline_repeats=1, tracking=True)
    text = text.replace('worker = "search"\n', f'worker = "search"\n{agents}\n')
    (lab / "nightlab.toml").write_text(text + extra)
    subprocess.run(["git", "init", "-q"], cwd=lab, check=True)
    return lab


def one_line(proc: subprocess.CompletedProcess, extra: str, feature: str) -> None:
    """Exit 2, and stderr is the single line naming the feature and the pip install."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == (
        f"error: {feature} needs nightlab[{extra}]: pip install 'nightlab[{extra}]'"
    ), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def nothing_ran(lab: Path) -> None:
    db = lab / ".nightlab" / "state.db"
    assert not db.exists() or rows(lab, "SELECT id FROM trials") == []


CASES = {
    "llm worker": ("pydantic_ai", "llm", "the worker 'openai:gpt-4o' (a model)", "", "",
                   ["--worker", "openai:gpt-4o"]),
    "llm mentor": ("pydantic_ai", "llm", "the mentor 'anthropic:claude-sonnet-4-5' (a model)",
                   'mentor = "anthropic:claude-sonnet-4-5"', "", []),
    "slurm": ("submitit", "slurm", '[executor] kind = "slurm"', "",
              '\n[executor]\nkind = "slurm"\n', []),
    "notify": ("apprise", "notify", "[notify] urls", "",
               '\n[notify]\nurls = ["json://127.0.0.1:9/hook"]\n', []),
}  # fmt: skip


def test_require_names_the_extra_and_passes_what_is_installed(monkeypatch):
    from nightlab.config import ConfigError, require

    require("json", "llm", "anything")  # installed: nothing to say
    monkeypatch.setitem(sys.modules, "pydantic_ai", None)  # how Python marks a module absent
    with pytest.raises(ConfigError) as err:
        require("pydantic_ai", "llm", "the mentor 'openai:gpt-4o' (a model)")
    assert str(err.value) == ("the mentor 'openai:gpt-4o' (a model) needs nightlab[llm]: "
                              "pip install 'nightlab[llm]'")  # fmt: skip
    with pytest.raises(ConfigError, match="nightlab\\[slurm\\]"):
        require("no_such_package_anywhere", "slurm", "x")


@pytest.mark.parametrize("command", ["run", "start"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_missing_extra_fails_the_night_at_once_with_the_pip_install(
    tmp_path, without, case, command
):
    module, extra, feature, agents, toml, args = CASES[case]
    lab = tiny(tmp_path, agents=agents, extra=toml)
    proc = without(module)(command, str(lab), *args)
    one_line(proc, extra, feature)
    nothing_ran(lab)


@pytest.mark.parametrize("case", ["slurm", "llm worker"])
def test_start_slurm_checks_the_extras_before_it_submits(tmp_path, without, case):
    module, extra, feature, agents, _, args = CASES[case]
    lab = tiny(tmp_path, agents=agents, extra='\n[executor]\nkind = "slurm"\n')
    proc = without(module)("start", str(lab), "--slurm", *args)
    one_line(proc, extra, feature)
    assert not (lab / ".nightlab" / "loop_job.sh").exists(), "nothing submitted"


@pytest.mark.parametrize("command", [["dashboard"], ["run", "--dashboard"],
                                     ["start", "--dashboard"]])  # fmt: skip
@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "sse_starlette"])
def test_the_dashboard_without_its_extra(tmp_path, without, command, module):
    lab = tiny(tmp_path)
    proc = without(module)(*command, str(lab), "--port", "9", timeout=60)
    one_line(proc, "dashboard", "the dashboard")
    nothing_ran(lab)


def test_notify_test_without_apprise(tmp_path, without):
    lab = tiny(tmp_path, extra='\n[notify]\nurls = ["json://127.0.0.1:9/hook"]\n')
    one_line(without("apprise")("notify-test", str(lab)), "notify", "[notify] urls")


@pytest.mark.slow
def test_a_search_night_and_its_views_need_no_extra(tmp_path, without):
    """Optuna's search, MLflow tracking, status, leaderboard and the report, with every
    optional package uninstalled."""
    lab = tiny(tmp_path)
    run = without(*OPTIONAL)
    proc = run("run", str(lab), "--max-trials", "2", timeout=240)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    done = rows(lab, "SELECT status FROM trials")
    assert [r["status"] for r in done].count("succeeded") >= 1, done
    st = json.loads(run("status", str(lab), "--json").stdout)
    assert st["trials"]["total"] == 2, st
    assert json.loads(run("leaderboard", str(lab), "--json").stdout)
    for args in (["status", str(lab)], ["leaderboard", str(lab)], ["report", str(lab)]):
        proc = run(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_help_imports_no_optional_package():
    probe = ("import sys; import nightlab.lab.cli; "
             f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_help_runs_with_every_optional_package_missing(without):
    proc = without(*OPTIONAL)("--help")
    assert proc.returncode == 0 and "dashboard" in proc.stdout, proc.stderr


# ------------------------------------------------------------------ the process environment
BAD = [("NIGHTLAB_PLAIN", "maybe"), ("COLUMNS", "wide"), ("COLUMNS", "-3"), ("COLUMNS", "9" * 400)]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_environment_variable_is_one_line_naming_it(tmp_path, without, name, value):
    lab = tiny(tmp_path)
    proc = without(env={name: value})("status", str(lab))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: environment variable {name}=") and "unset it" in line
    assert "Traceback" not in proc.stderr


def test_an_empty_variable_counts_as_unset_and_the_usual_spellings_work(tmp_path, without):
    lab = tiny(tmp_path)
    for env in ({"NIGHTLAB_PLAIN": ""}, {"NIGHTLAB_PLAIN": "0"}, {"NIGHTLAB_PLAIN": "yes"},
                {"COLUMNS": ""}, {"COLUMNS": "80"}):  # fmt: skip
        proc = without(env=env)("status", str(lab))
        assert proc.returncode == 0, (env, proc.stderr)


def test_the_environment_is_read_fresh(monkeypatch):
    from nightlab.config import environment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/a.db")
    assert environment().mlflow_tracking_uri == "sqlite:////tmp/a.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert environment().mlflow_tracking_uri is None
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    assert environment().mlflow_experiment_name == "team"
