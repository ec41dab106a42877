"""The `research` action: the worker names a query; the lab's Library searches it off the
loop's thread (like thinking: the running trials stay watched), its papers are cached in the
store, the cycle's storyline line and the workpad say what was found, and the worker is
asked again only once the papers are there, so its next context shows them.

A failed or slow search is ordinary: the Library falls back to the cache and says so; a
search that outlives RESEARCH_S is left behind (its thread is a daemon) and the night goes
on without it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from nightlab.loop import workpad
from nightlab.loop.night import Night
from nightlab.store.db import Cycle, Note, Store
from nightlab.store.redact import redact

RESEARCH_S = 120.0  # the longest a night waits for one search before asking the worker again
SHOWN = 5  # papers named in the storyline line and the workpad note


@dataclass
class _Search:
    trace: str
    query: str
    started: float
    thread: threading.Thread
    found: Any = None  # the Library's Found, once done
    error: str | None = None


class Research:
    def __init__(self, night: Night, library: Any) -> None:
        self.night, self.library = night, library
        self.current: _Search | None = None

    @property
    def busy(self) -> bool:
        """A search is running (the worker waits for its papers)."""
        self.collect()
        return self.current is not None

    def start(self, line: str, query: str) -> None:
        """Search `query` in the background; `line`: the storyline line of the research
        decision's cycle (it begins with the cycle's trace id)."""
        trace = re.match(r"\[(\w+)\]", line).group(1)  # type: ignore[union-attr]
        if self.library is None:
            record(self.night, trace, query, None, ["no literature in this night"])
            return
        search = _Search(trace, query, time.time(), threading.Thread(target=lambda: None))
        search.thread = threading.Thread(
            target=self._run, args=(search,), name="nightlab-research", daemon=True
        )
        self.current = search
        search.thread.start()

    def _run(self, search: _Search) -> None:
        try:
            search.found = self.library.search(search.query)
        except Exception as exc:  # a bad query (the Library refuses it) or a bug: said
            search.error = f"{type(exc).__name__}: {exc}"

    def collect(self) -> None:
        """Record a finished search (or give up on one past RESEARCH_S)."""
        search = self.current
        if search is None:
            return
        if search.thread.is_alive():
            if time.time() - search.started < RESEARCH_S:
                return
            search.error = f"no answer in {RESEARCH_S:g} s: left behind"
        self.current = None
        found = search.found if search.error is None else None
        notes = list(found.notes) if found is not None else [search.error or "no answer"]
        record(self.night, search.trace, search.query, found, notes)
        shown = len(found.papers) if found is not None else 0
        self.night.report(
            f"research {search.query!r}: {shown} paper(s)"
            + (" from the cache" if found is not None and found.cached else "")
            + (f" ({'; '.join(notes)})" if notes else "")
        )


def record(night: Night, trace: str, query: str, found: Any, notes: list[str]) -> None:
    """A search's outcome: its cycle's storyline line (the query and the top papers), a
    `research_done` event (every key, for the report), a workpad note with links."""
    papers = list(found.papers) if found is not None else []
    top = "; ".join(f"{p.title} ({p.year or 'n.d.'}, {p.key})" for p in papers[:SHOWN])
    line = redact(
        f"[{trace}] research {query!r}: {len(papers)} paper(s)"
        + (" from the cache" if found is not None and found.cached else "")
        + (f" — {top}" if top else "")
        + (f" [{'; '.join(notes)}]" if notes else "")
    )
    links = "".join(f"\n  - {p.line()}" + (f" <{p.url}>" if p.url else "") for p in papers[:SHOWN])
    with night.store.tx() as s:
        cycle = s.query(Cycle).filter_by(trace_id=trace).one_or_none()
        if cycle is not None:
            cycle.summary = line
        Store.event(s, "research_done", run_id=night.journal.run_id, trace_id=trace,
                    query=query, keys=[p.key for p in papers], notes=notes,
                    cached=bool(found is not None and found.cached))  # fmt: skip
        text = redact(f"research {query!r} found {len(papers)} paper(s){links}")
        s.add(Note(ts=time.time(), trace_id=trace, author="nightlab", section="notes", text=text))
        s.flush()
        workpad.render(s, night.paths.artifacts)
    night.journal.render_storyline()
