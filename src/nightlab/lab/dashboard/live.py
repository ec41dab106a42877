"""Live updates: each open overview holds one server-sent-events stream; the server polls the
store's change stamp (primary-key maxima and the run's heartbeat, a few index lookups) every
`POLL_S` and, when it moved, pushes the overview's fragments, rendered and escaped here
(the scatter's data too when trials, not only the heartbeat, changed)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from nightlab.lab.api import Lab
from nightlab.lab.dashboard import views
from nightlab.store import pages, read
from nightlab.store.files import held_by

POLL_S = 0.5
FRAGMENTS = {"status": "_status.html", "running": "_running.html", "recent": "_recent.html"}


def stamp(lab: Lab) -> tuple[Any, ...] | None:
    """The store's change stamp, and whether a loop holds the lab's lock (a killed loop
    writes nothing: its lock tells); None while the store does not exist or is being made."""
    if not lab.db.is_file():
        return None
    try:
        with read.connect(lab.db) as conn:
            return (*pages.stamp(conn), held_by(lab.state) is not None)
    except sqlite3.OperationalError:
        return None


def payload(
    lab: Lab, render: Callable[..., str], with_scatter: bool, /, **ctx: Any
) -> dict:
    """The overview's fragments (HTML, escaped by the templates) and, if asked, the scatter."""
    view = views.overview(lab, with_scatter=with_scatter)
    html = {key: render(name, **{**ctx, **view}) for key, name in FRAGMENTS.items()}
    out: dict[str, Any] = {"state": view["status"]["state"], "html": html}
    if with_scatter and view["scatter"] is not None:
        out["scatter"] = view["scatter"]
    return out


async def stream(
    lab: Lab,
    render: Callable[..., str],
    disconnected: Callable[[], Any],
    poll_s: float = POLL_S,
    /,
    **ctx: Any,
) -> AsyncIterator[dict[str, str]]:
    """Server-sent events for one client: `overview` whenever the stamp moves."""
    last: tuple[Any, ...] | None = None
    first = True
    while not await disconnected():
        now = await asyncio.to_thread(stamp, lab)
        if first or now != last:
            # the heartbeat alone moved: the status and log tails change, the scatter not
            trials_moved = first or last is None or now is None or now[:5] != last[:5]
            data = await asyncio.to_thread(payload, lab, render, trials_moved, **ctx)
            yield {"event": "overview", "data": json.dumps(data, allow_nan=False)}
            last, first = now, False
        await asyncio.sleep(poll_s)
