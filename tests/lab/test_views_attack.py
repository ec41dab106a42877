"""`nightlab status` and the leaderboard print what agents and trials wrote (a cycle's
summary, a stop reason, parameter values): shown as text, never as Rich markup or terminal
control sequences, whatever it holds."""

from __future__ import annotations

from rich.console import Console

from nightlab.lab.views import leaderboard_table, summary

HOSTILE = "\x1b[2J\x1b]0;owned\x07[bold red]fake[/] kept\u202e\nsecond line"


def shown(renderable) -> str:
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    console.print(renderable)
    return console.export_text(styles=False)


def status(**over) -> dict:
    st = {"lab": "lab", "state": "stopped", "end_reason": HOSTILE, "cycles": 1,
          "trials": {"total": 1, "succeeded": 1, "failed": 0, "running": 0, "kept": 0},
          "baseline": None, "best": {"trial": 2, "objective": 0.5, "params": {"lr": HOSTILE}},
          "usage": {}, "last_story": HOSTILE, "heartbeat_age_s": None}  # fmt: skip
    return {**st, **over}


def test_status_shows_an_agents_text_literally():
    text = shown(summary(status(), "score"))
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert text.count("[bold red]fake[/] kept") == 3  # the reason, the params, the story
    assert "second line" in text and "\nsecond line" not in text  # one line each


def test_the_leaderboard_shows_parameter_values_literally():
    row = {"rank": 1, "trial": 2, "objective": 0.5, "sd": None, "n": 1, "selection": None,
           "verdict": "kept", "commit": "a", "base_commit": "b", "wall_s": 1.0,
           "params": {"note": "[link=https://evil.example]click[/link]\x1b[5m"}}  # fmt: skip
    text = shown(leaderboard_table([row], "lab", "score"))
    assert "[link=https://evil.example]click[/link]" in text.replace("\n", "").replace("│", "")
    assert "\x1b[5m" not in text
