"""The Library: paper search through the lab's cache (store/papers.py) and the sources
(`[literature] sources`, agents/literature), for the `research` action, the agents' tools
(`search_papers`, `read_paper`) and `nightlab papers`.

Per source: an answer cached within `cache_days` costs no request; otherwise the source
is asked (with a time limit), its answer cached; when it fails (timeout, 429, 5xx,
malformed answer: a `LiteratureError`, or any other exception from a buggy client) the
Library falls back to the cache of any age, says so in one note, and leaves that source
alone for a while (growing back-off). `offline` (config or argument): the cache only.
A network failure never raises; only a bad query does (ValueError, with the reason).
Queries are redacted before they leave (store/redact.py): a secret-looking string or the
value of a secret variable is removed, and the query as sent is what `Found.query` says.

Thread-safe: the loop's thread and a worker's thinking thread may search at once; the same
query is searched by one thread at a time (the second is served the first's answer from
the cache) and writes to the store are serialised.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nightlab.agents.literature import LiteratureError, Paper, dedupe, net, sources_for
from nightlab.store import papers as cache
from nightlab.store.redact import add_secret_names, config_secret_names, redact

if TYPE_CHECKING:
    from nightlab.agents.literature import Source
    from nightlab.config import Config
    from nightlab.store.db import Store

MAX_QUERY_CHARS = 300
SOURCE_TIMEOUT_S = 90.0  # a source silent this long is given up for this query
BACKOFF_S = (30.0, 60.0, 120.0, 300.0, 900.0)  # after 1, 2, 3, … failures in a row
_MARKER = re.compile(r"\[redacted [^\]]*\]")
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

__all__ = ["Library", "Found", "MAX_QUERY_CHARS", "to_paper"]


@dataclass
class Found:
    """One search's answer: the query as sent, the papers (deduplicated across sources),
    whether no request was made, and one note per source that failed or was served stale
    or offline."""

    query: str
    papers: list[Paper] = field(default_factory=list)
    cached: bool = True
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "cached": self.cached,
            "notes": list(self.notes),
            "papers": [p.model_dump() for p in self.papers],
        }


class Library:
    """Paper search and lookup over the lab's cache and the configured sources."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        sources: list[Source] | None = None,
        report: Callable[[str], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        timeout_s: float = SOURCE_TIMEOUT_S,
    ) -> None:
        self.section = cfg.literature
        self.store = store
        self._sources = list(sources) if sources is not None else None  # lazily made
        self.names = (
            [s.name for s in sources] if sources is not None else list(self.section.sources)
        )
        self._report = report
        self._clock = clock
        self._timeout = timeout_s
        self._lock = threading.Lock()  # store writes, making the sources, back-off state
        self._stripes = [threading.Lock() for _ in range(32)]  # one query at a time
        self._down: dict[str, tuple[float, int, str]] = {}  # source → (until, failures, why)
        add_secret_names(*config_secret_names(cfg))

    # ------------------------------------------------------------------------ the API
    def search(self, query: str, *, offline: bool | None = None) -> Found:
        """Papers for `query` from every source, cache first (see the module's doc)."""
        sent, removed = clean_query(query)
        offline = self.section.offline if offline is None else offline
        found = Found(query=sent)
        if removed:
            found.notes.append("query: a secret-looking string was removed before searching")
        stripe = self._stripes[hash(cache.normal_query(sent)) % len(self._stripes)]
        with stripe:
            lists = [self._one(name, sent, offline, found) for name in self.names]
        limit = self.section.max_results * max(1, len(self.names))
        found.papers = dedupe([p for papers in lists for p in papers])[:limit]
        if offline and not found.papers:
            found.notes.append(f"offline: no cached papers for “{sent}”")
        for note in found.notes:
            self._say(note)
        return found

    def read(self, key: str, *, offline: bool | None = None) -> Paper | None:
        """The paper known by `key` (`arxiv:…`, `doi:…`, `s2:…`, `openalex:…`, `title:…`):
        from the cache, else from the first source that knows it (then cached)."""
        key = clean_key(key)
        hit = cache.paper(self.store, key)
        if hit is not None and (paper := to_paper(hit)) is not None:
            return paper
        if self.section.offline if offline is None else offline:
            self._say(f"offline: {key} is not in the cache")
            return None
        for name in self.names:
            if (why := self._backing_off(name)) is not None:
                self._say(f"{name}: {why}")
                continue
            try:
                got = self._call(lambda s, k=key: s.get(k), name)
            except Exception as exc:  # noqa: BLE001 - a failing source is ordinary
                self._say(f"{name}: {self._failed(name, exc)}")
                continue
            self._recovered(name)
            if isinstance(got, Paper) and key in got.ids():  # not another paper (a mirror's)
                if failed := self._store(cache.remember, [dump(got)], now=self._clock()):
                    self._say(f"{name}: could not cache {key} ({failed})")
                return got
        return None

    def recent(self, n: int = 3, per_query: int = 3) -> list[tuple[str, list[Paper]]]:
        """The `n` latest queries of this lab with their top papers (for a context)."""
        out = []
        for entry in cache.recent(self.store, n, per_query):
            papers = [p for d in entry["papers"] if (p := to_paper(d)) is not None]
            out.append((entry["query"], papers))
        return out

    # ------------------------------------------------------------------------ inside
    def _one(self, name: str, query: str, offline: bool, found: Found) -> list[Paper]:
        """One source's papers for `query`: fresh cache, else the source, else stale."""
        now = self._clock()
        hit = cache.entry(self.store, name, query)
        cached = [] if hit is None else [p for d in hit[1] if (p := to_paper(d)) is not None]
        if hit is not None and now - hit[0] <= self.section.cache_days * 86400:
            return cached
        served = f"served the cache from {ago(now - hit[0])}" if hit is not None else ""
        if offline:
            if hit is not None:
                found.notes.append(f"{name}: offline; {served}")
            return cached
        why = self._backing_off(name)
        if why is None:
            found.cached = False
            limit = self.section.max_results
            try:
                got = self._call(lambda s: s.search(query, limit), name)
            except Exception as exc:  # noqa: BLE001 - a failing source is ordinary
                why = self._failed(name, exc)
            else:
                self._recovered(name)
                papers = [p for p in (got if isinstance(got, list) else []) if isinstance(p, Paper)]
                papers = dedupe(papers)[:limit]
                records = [dump(p) for p in papers]
                failed = self._store(cache.put, name, query, records, now=now)
                if failed is not None:
                    found.notes.append(f"{name}: could not cache its answer ({failed})")
                return papers
        found.notes.append(f"{name}: {why}; {served or 'nothing cached'}")
        return cached

    def _source(self, name: str) -> Source:
        with self._lock:
            if self._sources is None:
                self._sources = sources_for(self.section)
            sources = self._sources
        for source in sources:
            if source.name == name:
                return source
        raise LiteratureError(f"{name}: no such source")

    def _call(self, ask: Callable[[Source], Any], name: str) -> Any:
        """`ask(source)` in a daemon thread, given up after the time limit."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["answer"] = ask(self._source(name))
            except BaseException as exc:  # noqa: BLE001 - carried to the caller
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"nightlab-literature-{name}", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            raise LiteratureError(f"no answer in {self._timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("answer")

    def _store(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> str | None:
        """Run a cache write under the lock; why it failed, or None."""
        with self._lock:
            try:
                write(self.store, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the answer is still served
                return one_line(exc)
        return None

    def _backing_off(self, name: str) -> str | None:
        with self._lock:
            until, _, why = self._down.get(name, (0.0, 0, ""))
        left = until - self._clock()
        return f"{why} (next try in {left:.0f}s)" if left > 0 else None

    def _failed(self, name: str, exc: BaseException) -> str:
        why = one_line(exc)
        if why.lower().startswith(f"{name}:"):
            why = why[len(name) + 1 :].strip() or why
        with self._lock:
            failures = self._down.get(name, (0.0, 0, ""))[1] + 1
            wait = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
            self._down[name] = (self._clock() + wait, failures, why)
        return why

    def _recovered(self, name: str) -> None:
        with self._lock:
            self._down.pop(name, None)

    def _say(self, line: str) -> None:
        if self._report is not None:
            try:
                self._report(line)
            except Exception:  # noqa: BLE001, S110 - a report is never worth a failure
                pass


def clean_query(query: Any) -> tuple[str, bool]:
    """(the query as it may be sent, whether a secret was removed); ValueError when it is
    empty, too long or nothing but secrets."""
    if not isinstance(query, str):
        raise ValueError(f"a query is text, not {type(query).__name__}")
    text = _SPACE.sub(" ", _CONTROL.sub(" ", query)).strip()
    if not text:
        raise ValueError("empty query: say what to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query too long: {len(text)} characters (at most {MAX_QUERY_CHARS})")
    safe = redact(text)
    if safe == text:
        return text, False
    safe = _SPACE.sub(" ", _MARKER.sub(" ", safe)).strip()
    if not safe:
        raise ValueError("nothing left to search once the secret-looking text was removed")
    return safe, True


def clean_key(key: Any) -> str:
    """A paper's key as given (`kind:value`); ValueError when it is not one."""
    text = key.strip() if isinstance(key, str) else ""
    if not text or len(text) > MAX_QUERY_CHARS or _CONTROL.search(text) or ":" not in text:
        raise ValueError(f"not a paper key: {str(key)[:80]!r} (e.g. arxiv:2106.09685, doi:10.…)")
    if redact(text) != text:
        raise ValueError("a paper key may not hold secret-looking text")
    return text


def dump(paper: Paper) -> dict[str, Any]:
    """What the cache stores of a paper: its fields and its ids (key first)."""
    return {**paper.model_dump(), "ids": paper.ids()}


def to_paper(data: Mapping[str, Any]) -> Paper | None:
    """A cached record as a Paper, its fields coerced to their types (None if hopeless)."""
    d: dict[str, Any] = {k: v for k, v in data.items() if k in Paper.model_fields}
    d["title"] = str(d.get("title") or "")
    d["abstract"] = str(d.get("abstract") or "")
    for name in ("authors", "sources"):
        value = d.get(name)
        value = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        d[name] = [str(v) for v in value if v is not None]
    for name in ("year", "citations"):
        d[name] = _int(d.get(name))
    for name in ("venue", "arxiv", "doi", "s2", "openalex", "url"):
        d[name] = str(d[name]) if d.get(name) not in (None, "") else None
    # one clean line each, an http(s) link or none: a record edited in the store is hostile
    d["title"] = net.text(d["title"], net.TITLE_CHARS) or ""
    d["abstract"] = net.abstract(d["abstract"])
    d["authors"] = net.authors(d["authors"])
    d["sources"] = [s for s in (net.text(v, 40) for v in d["sources"]) if s]
    for name in ("venue", "arxiv", "doi", "s2", "openalex"):
        d[name] = net.text(d[name], net.VENUE_CHARS)
    d["url"] = net.url(d["url"])
    if not d["title"]:
        return None
    try:
        return Paper.model_validate(d)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        return int(value.strip())
    return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    why = text[0] if text else type(exc).__name__
    if not isinstance(exc, LiteratureError):
        why = f"{type(exc).__name__}: {why}" if text else why
    return redact(why)[:200]


def ago(seconds: float) -> str:
    """`3 days ago`, `5 hours ago`, `12 minutes ago`, `just now`."""
    seconds = max(0.0, seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size * (2 if unit != "minute" else 1):
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
