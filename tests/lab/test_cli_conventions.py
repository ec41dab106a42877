"""Python conventions and the first steps that tripped (issue 19): one version, the package
files, every option explained, `stop` on a stopped lab, `adopt [LAB] TRIAL`, the finish-up
in local time, the names of --confirm-top and --top."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from conftest import cli

REPO = Path(__file__).resolve().parents[2]


def test_one_version_read_from_the_installed_distribution():
    import nightlab

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert version("nightlab") == pyproject["version"] == nightlab.__version__
    for flag in ("--version", "-V"):
        proc = cli(flag)
        assert proc.returncode == 0 and proc.stdout == f"nightlab {pyproject['version']}\n"
    assert "--version" in cli("--help").stdout
    assert '__version__ = "' not in (REPO / "src/nightlab/__init__.py").read_text()


def test_license_py_typed_classifiers_and_urls():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert (REPO / "src/nightlab/py.typed").is_file()  # packaged: the wheel takes src/nightlab
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Homepage", "Repository", "Issues"} <= set(project["urls"])


def _params():
    from nightlab.lab.cli import app

    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    yield "nightlab", group.params
    for name, command in group.commands.items():
        yield name, command.params


def test_every_option_and_argument_has_help():
    missing = [
        f"nightlab {name} {param.name}"
        for name, params in _params()
        for param in params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing


def test_top_means_rows_shown_and_confirm_top_the_candidates_confirmed():
    shown = {name: {o for p in params for o in p.opts if not getattr(p, "hidden", False)}
             for name, params in _params()}  # fmt: skip
    for name in ("run", "start", "finishup"):
        assert "--confirm-top" in shown[name] and "--top-k" not in shown[name], name
    for name in ("leaderboard", "report"):
        assert "--top" in shown[name] and "--top-k" not in shown[name], name


def test_stop_on_a_lab_that_is_not_running_says_so_and_exits_0(make_lab):
    lab = make_lab()
    proc = cli("stop", str(lab), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "is not running" in proc.stdout and "nothing to stop" in proc.stdout
    assert not proc.stderr


def test_adopt_takes_the_lab_first_and_still_the_old_order_with_a_notice(make_lab):
    lab = make_lab()
    new = cli("adopt", str(lab), "7", check=False)
    assert new.returncode == 2 and "has no trials yet" in new.stderr and "notice" not in new.stderr
    old = cli("adopt", "7", str(lab), check=False)
    assert old.returncode == 2 and "has no trials yet" in old.stderr
    assert f"nightlab adopt {lab} 7" in old.stderr.replace("\n", "")
    wrong = cli("adopt", str(lab), "seven", check=False)
    assert wrong.returncode == 2 and "adopt [LAB] TRIAL" in wrong.stderr


def test_split_adopt():
    from nightlab.lab.cli_more import split_adopt

    assert split_adopt(["3"]) == (Path("."), 3)
    assert split_adopt(["lab", "3"]) == (Path("lab"), 3)
    assert split_adopt(["3", "lab"]) == (Path("lab"), 3)


@pytest.fixture
def new_york(monkeypatch):
    """This process's (and its children's) local time: UTC-5, no tzdata needed."""
    import time

    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_at_is_local_time_and_durations_read_as_hours_and_minutes(new_york):
    from nightlab.loop.finish_request import request, span

    utc = dt.datetime(2030, 1, 1, 10, 30, tzinfo=dt.UTC).timestamp()  # 05:30 at UTC-5
    assert request(at="2030-01-01T05:30", now=0).at == utc
    assert request(at="2030-01-01T05:30Z", now=0).at == dt.datetime(
        2030, 1, 1, 5, 30, tzinfo=dt.UTC).timestamp()  # fmt: skip
    assert [span(s) for s in (30, 45 * 60, 2 * 3600, 3900, 26 * 3600, 76 * 3600, 96 * 3600)] == [
        "30 s", "45 min", "2 h", "1 h 05 min", "26 h", "3 d 4 h", "4 d"]  # fmt: skip
    said = request(in_minutes=90, minutes_left=75, now=1000).describe(None, now=1000)
    assert "begins in 1 h 30 min" in said and "(2 h 45 min left)" in said, said
    assert "(1969-12-31 20:46-05:00)" in said  # 01:46 UTC, as local time


def test_finishup_at_in_local_time_and_confirm_top_and_its_old_spelling(make_lab, new_york):
    lab = make_lab()
    shown = cli("finishup", str(lab), "--at", "2099-01-01T00:00", "--confirm-top", "4").stdout
    assert "(2099-01-01 00:00-05:00)" in shown and "top 4" in shown  # as given: local time
    stored = json.loads((lab / ".nightlab" / "FINISH_UP.json").read_text())
    assert stored["top_k"] == 4 and stored["begins_at_utc"] == "2099-01-01T05:00:00Z"
    cli("finishup", str(lab), "--in-minutes", "5", "--minutes-left", "10", "--top-k", "2")
    assert json.loads((lab / ".nightlab" / "FINISH_UP.json").read_text())["top_k"] == 2


@pytest.mark.parametrize("bad", ["--top-k 0", "--confirm-top 0"])
def test_confirm_top_is_at_least_one(make_lab, bad):
    proc = cli("finishup", str(make_lab()), "--minutes-left", "5", *bad.split(), check=False)
    assert proc.returncode == 2
