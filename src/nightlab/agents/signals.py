"""Priority signals: a few numbers that summarise where the night stands, shown to the worker
as advice (seed 001: research, non-training, breakout, TODO pressure). They shape the prompt;
they never force an action — the worker decides, the gate judges.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from nightlab.agents.decision import Dimension
from nightlab.store import read

WINDOW = 12  # decisions looked back on
DIMENSIONS: tuple[str, ...] = Dimension.__args__  # type: ignore[attr-defined]


def compute(conn: sqlite3.Connection, open_todos: int) -> dict[str, dict[str, Any]]:
    """Each signal: a score in [0, 1] and the hint shown when it is at least medium."""
    recent = read.recent_cycles(conn, WINDOW)
    runs = [c for c in recent if c["action"] == "run" and c["status"] is not None]
    judged = [c for c in runs if c["status"] != "running"]
    unkept = _streak(judged, lambda c: c["verdict"] != "kept")
    failed = _streak(judged, lambda c: c["status"] not in ("succeeded", "pruned"))
    thought = any(c["action"] in ("research", "analyze") for c in recent)
    dims = [c["dimension"] for c in runs if c["dimension"]]
    untried = [d for d in DIMENSIONS if d not in dims]
    focus = max((dims.count(d) for d in set(dims)), default=0) / max(len(dims), 1)
    out = {
        "research_priority": (
            min(1.0, unkept / 8) * (0.5 if thought else 1.0),
            "several trials brought nothing: reading the code, the data or the literature "
            "(action `research` or `analyze`) may beat another guess",
        ),
        "non_training_priority": (
            min(1.0, failed / 3),
            "recent trials failed: fix the cause (read the log tail) before training more",
        ),
        "breakout_priority": (
            min(1.0, unkept / 6) * (0.5 + 0.5 * focus),
            "stuck around one idea: try a different dimension"
            + (f" (untried: {', '.join(untried)})" if untried else ""),
        ),
        "todo_pressure": (
            min(1.0, open_todos / 20),
            f"{open_todos} TODOs are open: resolve or drop some before adding more",
        ),
    }
    return {name: {"score": round(score, 2), "hint": hint} for name, (score, hint) in out.items()}


def render(signals: dict[str, dict[str, Any]]) -> list[str]:
    """Prompt lines for the signals at medium or above; nothing when all are low."""
    lines = []
    for name, s in signals.items():
        if s["score"] >= 0.5:
            level = "high" if s["score"] >= 0.8 else "medium"
            lines.append(f"- {name} {level} ({s['score']:.2f}): {s['hint']}")
    return ["\n# Signals (advice, not orders)", *lines] if lines else []


def _streak(rows: list[dict[str, Any]], cond: Any) -> int:
    """How many of the newest rows in a row satisfy `cond`."""
    n = 0
    for row in rows:
        if not cond(row):
            break
        n += 1
    return n
