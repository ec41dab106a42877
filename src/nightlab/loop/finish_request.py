"""Finish-up: the last phase before a deadline. Exploration stops while a trial can still
finish in time, the top candidates get confirmation runs over new seeds, the final pick's
held-out test metric is computed once, and the report is written.

The request lives in the store (meta key `finishup`) so a running loop sees it within a
heartbeat, and is mirrored to `.nightlab/FINISH_UP.json` for people and scripts.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nightlab import UserError
from nightlab.store import files
from nightlab.store.paths import LabPaths

DEFAULT_MINUTES = 60.0
META_KEY = "finishup"
Phase = Literal["scheduled", "active", "confirming", "reporting", "done", "cancelled"]


class FinishUpError(UserError, ValueError):
    """A finish-up request that cannot be honoured; the message says why."""


class FinishUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requested_at: float
    minutes_left: float | None = Field(None, gt=0)
    run_hours: float | None = Field(None, gt=0)
    at: float | None = None  # when it begins (epoch seconds)
    final_rounds: int = Field(1, ge=0, le=20)
    top_k: int = Field(3, ge=1, le=100)
    note: str = ""
    report_now: bool = False
    phase: Phase = "scheduled"

    def window(self, night_started: float | None) -> tuple[float | None, float | None]:
        """(begins, ends) in epoch seconds; None while a `run_hours` night has not begun."""
        minutes = (self.minutes_left or DEFAULT_MINUTES) * 60
        if self.report_now:
            return self.requested_at, self.requested_at
        if self.run_hours is not None:
            if night_started is None:
                return None, None
            ends = night_started + self.run_hours * 3600
            return ends - minutes, ends
        begins = self.at if self.at is not None else self.requested_at
        return begins, begins + minutes

    def describe(self, night_started: float | None, now: float | None = None) -> str:
        """One human line: the phase and when it begins and ends."""
        now = time.time() if now is None else now
        begins, ends = self.window(night_started)
        if self.phase in ("done", "cancelled"):
            how = " (report now, no final training)" if self.report_now else ""
            return f"finish-up {self.phase}{how}"
        if self.report_now:
            return "finish-up: report now (no final training)"
        if begins is None or ends is None:
            return (
                f"finish-up: the last {self.minutes_left or DEFAULT_MINUTES:g} min of a "
                f"{self.run_hours:g} h night (times fixed when the night starts)"
            )
        when = "began" if begins <= now else f"begins in {span(begins - now)}"
        return (
            f"finish-up {self.phase}: {when} ({_local(begins)}), ends {_local(ends)} "
            f"({span(max(ends - now, 0))} left); {self.final_rounds} confirmation "
            f"round(s) for the top {self.top_k}" + (f" — {self.note}" if self.note else "")
        )


def request(
    *,
    minutes_left: float | None = None,
    run_hours: float | None = None,
    at: str | None = None,
    in_minutes: float | None = None,
    final_rounds: int = 1,
    top_k: int = 3,
    note: str = "",
    report_now: bool = False,
    now: float | None = None,
) -> FinishUp:
    """A validated request from the command-line forms (`--at` is ISO 8601: local time
    unless it names its zone, e.g. `Z` or `+01:00`)."""
    now = time.time() if now is None else now
    starts = [name for name, v in (("--at", at), ("--in-minutes", in_minutes),
                                   ("--run-hours", run_hours)) if v is not None]  # fmt: skip
    if len(starts) > 1:
        raise FinishUpError(f"give one of {', '.join(starts)}: they all say when it begins")
    if not starts and minutes_left is None and not report_now:
        raise FinishUpError(
            "say when: --minutes-left M (now, for M minutes), --run-hours H (the last "
            "--minutes-left of an H-hour night), --at TIME (ISO 8601), --in-minutes N, or "
            "--report-now"
        )
    begins = None
    if at is not None:
        begins = _parse_at(at)
    elif in_minutes is not None:
        if in_minutes < 0:
            raise FinishUpError(f"--in-minutes must be 0 or more, not {in_minutes:g}")
        begins = now + in_minutes * 60
    try:
        return FinishUp(
            requested_at=now, minutes_left=minutes_left, run_hours=run_hours, at=begins,
            final_rounds=final_rounds, top_k=top_k, note=note, report_now=report_now,
        )  # fmt: skip
    except ValueError as exc:
        raise FinishUpError(str(exc).split("\n", 1)[-1].strip()) from None


def parse(value: Any) -> FinishUp | None:
    """The stored request (None when there is none)."""
    if not value:
        return None
    return FinishUp.model_validate(value if isinstance(value, dict) else json.loads(value))


def mirror(state: Path, finish: FinishUp | None, night_started: float | None) -> None:
    """Write `.nightlab/FINISH_UP.json` (removed when there is no request)."""
    path = LabPaths.of_state(state).finish_up
    if finish is None:
        path.unlink(missing_ok=True)
        return
    begins, ends = finish.window(night_started)
    data = {
        **finish.model_dump(),
        "begins_at_utc": _utc(begins),
        "ends_at_utc": _utc(ends),
        "summary": finish.describe(night_started),
    }
    files.write_json(path, data, newline=True)


def span(seconds: float) -> str:
    """A duration as people say it: `30 s`, `45 min`, `2 h`, `1 h 05 min`, `3 d 4 h`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    if hours >= 48:
        days, hours = divmod(hours, 24)
        return f"{days} d" if not hours else f"{days} d {hours} h"
    return f"{hours} h" if not minutes else f"{hours} h {minutes:02d} min"


def _parse_at(text: str) -> float:
    """Epoch seconds of an ISO 8601 time; one without a zone is this machine's local time."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FinishUpError(
            f"--at {text!r} is not an ISO 8601 time; write e.g. 2026-02-18T22:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive: local time (what a person at this machine means)
    return when.timestamp()


def _local(ts: float) -> str:
    """`2026-02-18 22:00+01:00`: this machine's local time, its offset named."""
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="minutes")


def _utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def store(state: Path, wanted: FinishUp) -> None:
    """Keep request `wanted` in the lab's store (made if need be: a request may precede the
    first run), with a `finishup_requested` event, and mirror it."""
    import os

    from nightlab.store import queries, read
    from nightlab.store.db import Store

    state.mkdir(parents=True, exist_ok=True)
    db = LabPaths.of_state(state).db
    kept = Store(db)
    try:
        kept.migrate()
        with kept.tx() as s:
            Store.set_meta(s, META_KEY, wanted.model_dump())
            Store.event(s, "finishup_requested", by=os.getpid(), **wanted.model_dump())
    finally:
        kept.close()
    with read.connect(db) as conn:
        started = queries.night_started(conn)
    mirror(state, wanted, started)
