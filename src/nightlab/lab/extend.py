"""`nightlab extend`: more hours for a running night. The new deadline is written to the
run's row (`runs.deadline_at`) with an `hours_extended` event; the running loop reads it at
its next heartbeat (loop/heartbeat.py) and says so in its report. A night without an hours
limit gets one: it ends H hours from now. A pending finish-up tied to the night's length
(`--run-hours` / `--finishup-minutes`) moves with it; one set for a clock time does not."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from nightlab import UserError
from nightlab.lab.errors import LabError
from nightlab.loop import finish_request
from nightlab.store import queries, read
from nightlab.store.db import Store

if TYPE_CHECKING:
    from nightlab.lab.api import Lab

MAX_HOURS = 168.0  # a week at a time: more is a typo, not a night


def check_hours(hours: Any) -> float:
    """`hours` as a float in (0, MAX_HOURS]; anything else refused with the reason."""
    try:
        value = float(hours)
    except (TypeError, ValueError):
        raise LabError(f"hours must be a number, not {hours!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise LabError(f"hours must be a finite number above 0, not {value!r}")
    if value > MAX_HOURS:
        raise LabError(f"hours must be at most {MAX_HOURS:g} (a week) at a time, not {value:g}")
    return value


def extend(lab: Lab, hours: Any) -> dict[str, Any]:
    """Add `hours` to the running night's deadline; returns the run, the old and new
    deadline (epoch seconds; old None: the night had no hours limit) and a summary line."""
    hours = check_hours(hours)
    current = lab.status()
    if current["state"] != "running":
        raise LabError(f"{lab.name} is not running (state: {current['state']}): nothing to extend")
    store = Store(lab.db)
    try:
        old, new = store.extend_deadline(current["run"], hours * 3600, hours=hours,
                                         by=os.getpid())  # fmt: skip
        moved = _move_finish_up(lab, store, hours)
    except UserError as exc:
        raise LabError(str(exc)) from None
    finally:
        store.close()
    was = "no time limit" if old is None else f"was {_clock(old)}"
    summary = f"the night now ends {_clock(new)} ({was}; +{hours:g} h)"
    if moved:
        summary += f"; {moved}"
    return {"run": current["run"], "hours": hours, "old_deadline": old, "new_deadline": new,
            "summary": summary}  # fmt: skip


def _move_finish_up(lab: Lab, store: Store, hours: float) -> str | None:
    """A pending finish-up placed at the end of an H-hour night ends H + `hours` later; one
    set for a clock time stays (the line says so)."""
    with store.tx() as s:
        wanted = finish_request.parse(Store.get_meta(s, finish_request.META_KEY))
        if wanted is None or wanted.phase in ("done", "cancelled"):
            return None
        if wanted.run_hours is None:
            return f"a finish-up still ends the night at its own time ({wanted.describe(None)})"
        wanted = wanted.model_copy(update={"run_hours": wanted.run_hours + hours})
        Store.set_meta(s, finish_request.META_KEY, wanted.model_dump())
    with read.connect(lab.db) as conn:
        started = queries.night_started(conn)
    finish_request.mirror(lab.state, wanted, started)
    return f"the finish-up moves with it ({wanted.describe(started)})"


def _clock(ts: float) -> str:
    return time.strftime("%a %H:%M:%S", time.localtime(ts))
