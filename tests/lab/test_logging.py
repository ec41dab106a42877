"""The night's lines are log records: silent through the API until logging is configured,
plain lines off a terminal, Rich on one, and a hostile line shown as written."""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import subprocess
import time

import pytest

from nightlab import Lab

from conftest import NIGHTLAB, cli, status, wait_for

pytestmark = pytest.mark.slow

# Rich markup, an ANSI colour and a bidi override, as a worker's rationale: the night's last
# line says "the worker stopped the night: <this>"
HOSTILE = "[bold red]x[/] \x1b[31mred\x1b[0m \u202eevil"
SHOWN = r"[bold red]x[/] \x1b[31mred\x1b[0m \u202eevil"  # what a terminal or a log shows
STOP = {"action": "stop", "rationale": HOSTILE}
STAMP = r"\d\d:\d\d:\d\d"


def tiny(make_lab, **options):
    return make_lab(decisions=[STOP], baseline_repeats=1, max_trials=3, **options)


def test_the_api_logs_the_night_as_records_and_prints_nothing(make_lab, capfd, caplog):
    lab = tiny(make_lab, trial_extra='sandbox = "none"')
    with caplog.at_level(logging.INFO, logger="nightlab"):
        final = Lab(lab).run()
    assert final["state"] == "finished"
    assert capfd.readouterr().out == ""  # a library prints nothing of its own
    assert all(r.name.startswith("nightlab.") for r in caplog.records)
    info = [r.getMessage() for r in caplog.records if r.name == "nightlab.loop"
            and r.levelno == logging.INFO]  # fmt: skip
    assert info[0].startswith("run 1 started on ")
    assert any(line.startswith("trial 1 (baseline) started on slot 0: ") for line in info)
    assert info[-1] == f"run 1 finished: the worker stopped the night: {HOSTILE}"
    [warned] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned.startswith('warning: [trial] sandbox = "none": trials and agents run unsealed')


def test_the_api_without_logging_configured_shows_nothing_and_report_still_hears(
    make_lab, capfd
):
    lab = tiny(make_lab)
    heard: list[str] = []
    Lab(lab).run(report=heard.append)
    assert capfd.readouterr().out == ""
    assert any(line.startswith("trial 1 (baseline) started") for line in heard)
    assert heard[-1].endswith(HOSTILE)  # the callback gets the line itself, not an escape


def test_off_a_terminal_the_lines_are_plain_and_hostile_text_is_inert(make_lab):
    lab = tiny(make_lab)
    env = {k: v for k, v in os.environ.items() if k not in ("NIGHTLAB_PLAIN", "FORCE_COLOR")}
    done = subprocess.run([*NIGHTLAB, "run", str(lab)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if re.match(STAMP, x)]  # the log's lines
    assert "\x1b" not in "".join(lines) and "\u202e" not in "".join(lines)
    assert any(re.fullmatch(rf"{STAMP} trial 1 \(baseline\) started on slot 0: boost=0 .*", x)
               for x in lines)  # fmt: skip
    assert lines[-1] == lines[-1][:9] + f"run 1 finished: the worker stopped the night: {SHOWN}"


def test_log_level_warning_hides_the_lines_and_a_bad_level_is_refused(make_lab):
    lab = tiny(make_lab)
    quiet = cli("--log-level", "WARNING", "run", str(lab)).stdout
    assert "started on slot" not in quiet and "tiny" in quiet  # the leaderboard still shows
    bad = cli("--log-level", "loud", "status", str(lab), check=False)
    assert bad.returncode == 2 and "loud" in bad.stderr


def test_on_a_terminal_rich_shows_the_lines_and_hostile_text_is_inert(make_lab):
    lab = tiny(make_lab)
    env = {k: v for k, v in os.environ.items() if k not in ("NIGHTLAB_PLAIN", "NO_COLOR")}
    out = _in_a_terminal([*NIGHTLAB, "run", str(lab)], {**env, "COLUMNS": "300"})
    logged = out.split("leaderboard —")[0]  # the night's lines, under the progress bar
    stamps = re.findall(rf"(.?.?.?.)\x1b\[[0-9;]*m{STAMP}\x1b", logged, re.S)  # Rich's time
    assert len(stamps) >= 3, out
    assert all(s.endswith(("\n", "\x1b[2K")) for s in stamps)  # each on a line of its own
    assert "trial 1 (baseline) started on slot 0" in logged
    assert SHOWN in logged  # markup as written, escapes as text
    assert "\u202e" not in logged and "\x1b[31mred" not in logged


def _in_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """`argv`'s output with a pseudo-terminal as its stdin, stdout and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks, end = [], time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_a_background_night_writes_its_plain_lines_to_loop_log(make_lab):
    lab = tiny(make_lab)
    assert "started tiny in the background" in cli("start", str(lab)).stdout
    log = lab / ".nightlab" / "loop.log"
    wait_for(lambda: "run 1 finished" in log.read_text(), 60, "the night to end")
    lines = [x for x in log.read_text().splitlines() if re.match(STAMP, x)]
    assert "\x1b" not in "".join(lines)
    assert any(re.fullmatch(rf"{STAMP} trial 1 \(baseline\) started on slot 0: .*", x)
               for x in lines)  # fmt: skip
    assert lines[-1].endswith(f"run 1 finished: the worker stopped the night: {SHOWN}")


def test_the_cli_in_process_leaves_the_logger_as_it_found_it(tmp_path):
    from typer.testing import CliRunner

    from nightlab.lab.cli import app

    logger = logging.getLogger("nightlab")
    before = (list(logger.handlers), logger.level, logger.propagate)
    for args in (["status", str(tmp_path)], ["--log-level", "debug", "schema"]):
        CliRunner().invoke(app, args)  # a failing command and one that succeeds
        assert (list(logger.handlers), logger.level, logger.propagate) == before
    assert [type(h) for h in before[0]] == [logging.NullHandler]


def test_a_background_night_logs_at_the_level_start_was_given(make_lab):
    lab = tiny(make_lab)
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    out = subprocess.run([*NIGHTLAB, "--log-level", "warning", "start", str(lab)], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    wait_for(lambda: status(lab)["state"] not in ("new", "running"), 60, "the night to end")
    log = (lab / ".nightlab" / "loop.log").read_text()
    assert "started on slot" not in log and "run 1 finished" not in log, log
    bad = subprocess.run([*NIGHTLAB, "status", str(lab)], capture_output=True, text=True,
                         env={**env, "NIGHTLAB_LOG_LEVEL": "chatty"}, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "NIGHTLAB_LOG_LEVEL" in bad.stderr
