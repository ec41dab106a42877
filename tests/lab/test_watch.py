"""`nightlab watch` on a real night: the running trial with its parameters and latest
metrics, trials N/max, a short terminal keeping the newest storyline lines, hostile output
shown as text, and watch leaving by itself when the night ends."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from conftest import NIGHTLAB, TRIAL, spawn_loop, status, wait_for

pytestmark = pytest.mark.slow

# the replayed trial prints metrics, a 50 MB line, then newer metrics, and runs a while
FLOOD = """
if p.get("mode") == "flood":
    print("step=1 loss=0.25", flush=True)
    sys.stdout.write("x" * (50 << 20) + "\\n")
    print("step=2 loss=0.125 acc=0.5", flush=True)
"""
HOSTILE = "[red]not markup[/red] \x1b[31mno escape\x1b[0m"
TAG = "[bold]tag[/bold]\x1b[2J"
LIMITS = """
[limits]
max_line_bytes = 67108864

[search.tag]
choices = ["plain", "[bold]tag[/bold]\\u001b[2J"]
default = "plain"
"""


def frames(out: str) -> list[list[str]]:
    """watch's output (not a terminal: one frame per refresh, each ending with its stamp)."""
    found, lines = [], []
    for line in out.splitlines():
        lines.append(line)
        if line.startswith("updated "):
            found.append(lines)
            lines = []
    return found


def test_watch_follows_a_running_night_and_leaves_when_it_ends(make_lab):
    lab = make_lab(
        decisions=[{"action": "run", "rationale": "a loud trial to watch", "hypothesis": HOSTILE,
                    "params": {"boost": 0.5, "sleep": 4.0, "mode": "flood", "tag": TAG}}],
        max_trials=4, trial=TRIAL.replace('print("starting", flush=True)\n',
                                         'print("starting", flush=True)\n' + FLOOD),
        modes=("flood",), toml_extra=LIMITS,
    )  # fmt: skip
    loop = spawn_loop(lab)
    try:
        wait_for(lambda: status(lab)["state"] == "running", 60, "the night to start")
        env = {**os.environ, "NIGHTLAB_PLAIN": "1", "COLUMNS": "230", "LINES": "9"}
        t0 = time.monotonic()
        watch = subprocess.run([*NIGHTLAB, "watch", str(lab), "--interval", "0.3"], env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        took = time.monotonic() - t0
    finally:
        loop.wait(timeout=120)
    assert watch.returncode == 0, watch.stderr
    assert status(lab)["state"] == "finished"
    shown = frames(watch.stdout)
    assert len(shown) >= 3 and took < 60
    # while trial 4 ran: its id, compact params, elapsed / budget and its newest metrics,
    # read from the end of a log holding a 50 MB line
    running = [f for f in shown if any(re.match(r"\s*4\s+trial\s", line) for line in f)]
    assert running, watch.stdout[-3000:]
    seen = "\n".join(running[-1])
    assert "running (1)" in seen and "boost=0.5" in seen and "/ 1:00" in seen
    assert "trials 4/4" in seen
    assert "loss=0.125" in seen and "acc=0.5" in seen
    # markup and escapes from the record are text: shown as written, never interpreted
    assert "[red]not markup[/red]" in seen and "[bold]tag[/bold]" in seen
    assert "\x1b" not in watch.stdout
    # every frame fits the terminal; the last (the night over) keeps the newest storyline
    # lines and drops the oldest
    assert all(len(f) <= 9 for f in shown)
    last = "\n".join(shown[-1])
    assert "trial 4 (trial)" in last and "trial 3 (baseline)" in last
    assert "trial 1 (baseline)" not in last
    closing = watch.stdout.splitlines()[-1]
    assert closing.startswith("the night finished") and "4 trials" in closing
