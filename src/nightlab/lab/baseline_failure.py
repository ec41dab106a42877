"""Why a night's baseline failed, told where the user looks: the end of `nightlab run`.

A night whose baseline never succeeded judged nothing. `run --max-trials 1` ends as
"finished" (the limit came first), a longer night stops with the baseline's error; either
way the user needs the failing trial's last stderr lines and, when auto-repair recognised
the failure, what to do (e.g. the pip install of a missing module)."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING, Any

from nightlab.store import files, kinds, queries

if TYPE_CHECKING:
    from nightlab.lab.api import Lab

EXIT_CODE = 3  # `nightlab run`: the night ended without a succeeded baseline
TAIL_LINES = 12
MISSING = re.compile(r"No module named ['\"]([A-Za-z_][\w.]*)['\"]")
# the bundled examples' imports: `pip install 'nightlab[examples]'` brings them
EXAMPLES = {"sklearn", "numpy", "lightning", "hydra_zen", "torch", "pytorch_lightning"}


def diagnose(lab: Lab) -> dict[str, Any] | None:
    """{trial, status, reason, tail, hint} of the first failed baseline repeat when no
    baseline repeat succeeded; None when one did (or none ran)."""
    if not lab.db.is_file():
        return None
    with closing(sqlite3.connect(f"file:{lab.db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT id, status, reason FROM trials WHERE kind = 'baseline' ORDER BY id"
        ).fetchall()
        if not rows or any(st == "succeeded" for _, st, _ in rows):
            return None
        failed = [
            (i, st, r)
            for i, st, r in rows
            if st in ("failed", "timeout") or (st == "killed" and not kinds.interrupted(st, r))
        ]
        if not failed:
            return None
        tid, status, reason = failed[-1]  # the last word: a repaired retry comes later
        repairs = [
            e["data"] for e in queries.events(conn, ["auto_repair"]) if e["trial_id"] == tid
        ]
    folder = lab.paths.trial(tid)
    tail = files.tail(folder / "stderr.log", TAIL_LINES).strip()
    tail = tail or files.tail(folder / "stdout.log", TAIL_LINES).strip()
    return {
        "trial": tid,
        "status": status,
        "reason": reason,
        "log": str(folder / "stderr.log"),
        "tail": tail,
        "hint": hint(tail, repairs),
    }


def hint(tail: str, repairs: list[dict[str, Any]]) -> str | None:
    """What to do: a missing module of the examples → the extra that brings it; else what
    auto-repair said it could not do (its message names the setting to add)."""
    found = MISSING.findall(tail)
    module = found[-1].split(".")[0] if found else None
    if module in EXAMPLES:
        return f"No module named {module}: pip install 'nightlab[examples]'"
    said = [r.get("message") for r in repairs if not r.get("ok") and r.get("message")]
    if said:
        return f"auto-repair: {said[-1]}"
    if module:
        return f"No module named {module}: install it where the trials run (pip install {module})"
    return None


def lines(found: dict[str, Any], lab: object = "LAB") -> list[str]:
    """The words `nightlab run` prints for a failed baseline."""
    why = f"{found['status']}" + (f": {found['reason']}" if found.get("reason") else "")
    out = [f"the baseline failed (trial {found['trial']}, {why}); no trial can be judged "
           "without it"]  # fmt: skip
    if found["tail"]:
        out += [f"the last lines of {found['log']}:"]
        out += ["  " + line for line in found["tail"].splitlines()]
    else:
        out += [f"it wrote nothing; see {found['log']}"]
    if found["hint"]:
        out += [f"fix: {found['hint']}"]
    out += [f"then start a new night: nightlab reset {lab} && nightlab run {lab}"]
    return out
