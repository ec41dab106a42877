"""The literature cache: what each source answered to each query, and the papers.

Records are plain dicts (an `agents.literature.Paper`'s `model_dump()`, optionally with an
`ids` list: the paper's `ids()`, its key first); the store does not know the Paper model
(the loop's Library converts). A paper is stored once under its key (`arxiv:…` before
`doi:…`, `s2:…`, `openalex:…`, then `title:…`) and found by any of its ids (`paper_ids`):
a paper first cached under `doi:…` and later found with its arXiv id moves to `arxiv:…`,
merged, and stays findable by both. Queries are normalised (stripped, spaces collapsed,
lower case); a source's newer answer to a query replaces its older one.

Everything is bounded: at most MAX_PER_QUERY papers per answer, each record's strings cut
(an abstract at ABSTRACT_CHARS) and the whole record under MAX_RECORD_CHARS of JSON;
values that are not JSON scalars are kept as text. The whole cache too: past MAX_QUERIES
answers or MAX_PAPERS papers the oldest go (down to nine tenths, so trimming is rare), with
every answer that named a paper that went, so an agent asking thousands of distinct
queries cannot grow the lab's store without end. A paper's time is when it was last
stored, so papers of recent answers stay.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from nightlab.store.db import Store
from nightlab.store.models import Paper, PaperId, PaperQuery

ID_FIELDS = ("arxiv", "doi", "s2", "openalex")  # the order of Paper.ids()
MAX_PER_QUERY = 100
MAX_QUERY_CHARS = 1000
MAX_ID_CHARS = 300
MAX_IDS = 16
MAX_FIELDS = 32
MAX_LIST = 50  # authors, sources
ABSTRACT_CHARS = 4000
TEXT_CHARS = {"title": 500, "venue": 300, "url": 1000, "abstract": ABSTRACT_CHARS}
OTHER_CHARS = 300  # any other string, and each list item
MAX_RECORD_CHARS = 16_000
MAX_QUERIES = 2_000
MAX_PAPERS = 10_000
_SPACE = re.compile(r"\s+")

__all__ = ["normal_query", "put", "remember", "entry", "cached", "stale", "paper", "recent"]


def normal_query(query: str) -> str:
    """The cache's form of a query: stripped, spaces collapsed, lower case, bounded."""
    return _SPACE.sub(" ", str(query)).strip().lower()[:MAX_QUERY_CHARS]


def put(
    store: Store,
    source: str,
    query: str,
    papers: Sequence[Mapping[str, Any]],
    *,
    now: float | None = None,
) -> list[str]:
    """Record `source`'s answer to `query` (its papers in rank order, at most
    MAX_PER_QUERY; records without a title or id are skipped), replacing its older answer
    to that query. Returns the stored papers' keys."""
    now = time.time() if now is None else now
    with store.tx() as s:
        keys = _remember_all(s, papers, now)
        q = normal_query(query)
        s.execute(delete(PaperQuery).where(PaperQuery.source == source, PaperQuery.query == q))
        s.add(PaperQuery(source=str(source)[:100], query=q, fetched_at=now, keys=keys))
        _trim(s)
    return keys


def remember(
    store: Store, papers: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> list[str]:
    """Store papers without a query (a paper read by its id); returns their keys."""
    now = time.time() if now is None else now
    with store.tx() as s:
        keys = _remember_all(s, papers, now)
        _trim(s)
        return keys


def entry(store: Store, source: str, query: str) -> tuple[float, list[dict[str, Any]]] | None:
    """(when, papers) of `source`'s latest answer to `query`, or None if it has none."""
    with store.tx() as s:
        row = s.scalars(
            select(PaperQuery)
            .where(PaperQuery.source == source, PaperQuery.query == normal_query(query))
            .order_by(PaperQuery.fetched_at.desc(), PaperQuery.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return row.fetched_at, _resolve(s, row.keys)


def cached(
    store: Store, source: str, query: str, max_age_s: float, *, now: float | None = None
) -> list[dict[str, Any]] | None:
    """`source`'s answer to `query` if it is at most `max_age_s` old; None otherwise."""
    found = entry(store, source, query)
    now = time.time() if now is None else now
    if found is None or found[0] < now - max_age_s:
        return None
    return found[1]


def stale(store: Store, source: str, query: str) -> list[dict[str, Any]] | None:
    """`source`'s latest answer to `query`, however old; None if it never answered."""
    found = entry(store, source, query)
    return None if found is None else found[1]


def paper(store: Store, key: str) -> dict[str, Any] | None:
    """The cached paper known by `key` (any of its ids), or None."""
    key = str(key).strip()
    kind, _, value = key.partition(":")
    tries = dict.fromkeys([key, f"{kind.lower()}:{value}", f"{kind.lower()}:{value.lower()}"])
    with store.tx() as s:
        for k in tries:
            if found := _resolve(s, [k]):
                return found[0]
    return None


def recent(store: Store, n: int, per_query: int = 3) -> list[dict[str, Any]]:
    """The `n` latest queries, newest first, each {"query", "fetched_at", "sources",
    "papers"} with its top `per_query` papers over every source that answered it."""
    if n <= 0:
        return []
    with store.tx() as s:
        rows = s.scalars(
            select(PaperQuery).order_by(PaperQuery.fetched_at.desc(), PaperQuery.id.desc())
            .limit(max(50, n * 10))
        ).all()  # fmt: skip
        groups: dict[str, list[PaperQuery]] = {}
        for row in rows:
            if row.query in groups or len(groups) < n:
                groups.setdefault(row.query, []).append(row)
        out = []
        for q, group in groups.items():
            ranked = sorted(group, key=lambda r: r.id)
            lists = [r.keys if isinstance(r.keys, list) else [] for r in ranked]
            keys = [ks[i] for i in range(MAX_PER_QUERY) for ks in lists if i < len(ks)]
            out.append({
                "query": q,
                "fetched_at": max(r.fetched_at for r in group),
                "sources": [r.source for r in ranked],
                "papers": _resolve(s, keys, limit=per_query),
            })  # fmt: skip
    return out


# ------------------------------------------------------------------------------ inside
def _trim(s: Session) -> None:
    """Drop the oldest answers past MAX_QUERIES and the oldest papers (with their ids) past
    MAX_PAPERS, down to nine tenths of each, and every answer naming a dropped paper (so a
    cached answer is whole or gone: the source is asked again, never half-served)."""
    s.flush()
    if ids := _oldest(s, PaperQuery.id, PaperQuery.fetched_at, MAX_QUERIES):
        s.execute(delete(PaperQuery).where(PaperQuery.id.in_(ids)))
    if keys := _oldest(s, Paper.key, Paper.fetched_at, MAX_PAPERS):
        gone = set(keys) | set(s.scalars(select(PaperId.id).where(PaperId.key.in_(keys))))
        naming = [
            row.id for row in s.execute(select(PaperQuery.id, PaperQuery.keys))
            if isinstance(row.keys, list) and gone.intersection(map(str, row.keys))
        ]  # fmt: skip
        s.execute(delete(PaperQuery).where(PaperQuery.id.in_(naming)))
        s.execute(delete(PaperId).where(PaperId.key.in_(keys)))
        s.execute(delete(Paper).where(Paper.key.in_(keys)))


def _oldest(s: Session, column: Any, when: Any, cap: int) -> list[Any]:
    count = s.scalar(select(func.count(column))) or 0
    if count <= cap:
        return []
    return list(s.scalars(select(column).order_by(when, column).limit(count - cap * 9 // 10)))


def _remember_all(s: Session, papers: Iterable[Mapping[str, Any]], now: float) -> list[str]:
    keys: list[str] = []
    for record in list(papers)[:MAX_PER_QUERY]:
        if not isinstance(record, Mapping):
            continue
        key = _remember(s, record, now)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def _remember(s: Session, record: Mapping[str, Any], now: float) -> str | None:
    given = record.get("ids")
    data = bounded({k: v for k, v in record.items() if k != "ids"})
    ids = _ids(data, given if isinstance(given, list | tuple) else ())
    if not ids:
        return None
    olds = dict.fromkeys(
        row.key for row in (s.get(PaperId, i) for i in ids) if row is not None
    )  # fmt: skip
    for old in olds:
        row = s.get(Paper, old)
        if row is not None:
            data = _merge(data, row.data or {})
    every = _ids(data, ids)
    for old in olds:
        every += [
            i for i in s.scalars(select(PaperId.id).where(PaperId.key == old)) if i not in every
        ]
    key = every[0]
    for old in olds:
        if old != key and (row := s.get(Paper, old)) is not None:
            s.delete(row)
    s.flush()
    s.merge(Paper(key=key, data=data, fetched_at=now))
    for i in every:
        s.merge(PaperId(id=i, key=key))
    return key


def _ids(data: Mapping[str, Any], given: Iterable[Any]) -> list[str]:
    """The ids of a record: from its id fields (in Paper.ids() order) before `given`, then
    a title key when it has nothing else; each bounded, without repeats."""
    ids = [f"{f}:{v.strip()}" for f in ID_FIELDS if isinstance(v := data.get(f), str) and v.strip()]
    ids += [g.strip() for g in given if isinstance(g, str) and ":" in g and g.strip()]
    title = data.get("title")
    if not ids and isinstance(title, str) and normal_title(title):
        ids.append("title:" + normal_title(title))
    return list(dict.fromkeys(i[:MAX_ID_CHARS] for i in ids))[:MAX_IDS]


def normal_title(title: str) -> str:
    """agents.literature.normal_title (the store may not import it): accents, case,
    punctuation and spacing dropped."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _merge(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """`new` completed by what `old` (the same paper) knows and it does not."""
    out = dict(new)
    for name, value in old.items():
        if name == "sources" and isinstance(value, list) and isinstance(out.get(name), list):
            out[name] = [*out[name], *(v for v in value if v not in out[name])][:MAX_LIST]
        elif name == "citations" and isinstance(value, int) and isinstance(out.get(name), int):
            out[name] = max(out[name], value)
        elif not out.get(name) and value and len(out) < MAX_FIELDS:
            out[name] = value
    return out


def _resolve(s: Session, keys: Iterable[Any], limit: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key in keys:
        if limit is not None and len(out) >= limit:
            break
        alias = s.get(PaperId, key) if isinstance(key, str) else None
        row = s.get(Paper, alias.key) if alias is not None else None
        if row is not None and row.key not in seen:
            seen.add(row.key)
            out.append(dict(row.data or {}))
    return out


def bounded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe, size-bounded copy of a record: string keys, strings cut (valid UTF-8),
    lists shortened, text fields (title, abstract, venue, url, ids) and anything that is
    not a JSON scalar kept as text, the whole under MAX_RECORD_CHARS."""
    out: dict[str, Any] = {}
    for name, value in list(data.items())[:MAX_FIELDS]:
        name = _text(name, 64)
        if isinstance(value, list | tuple):
            out[name] = [_scalar(v, OTHER_CHARS) for v in list(value)[:MAX_LIST]]
        elif value is not None and (name in TEXT_CHARS or name in ID_FIELDS):
            out[name] = _text(value, TEXT_CHARS.get(name, MAX_ID_CHARS))
        else:
            out[name] = _scalar(value, OTHER_CHARS)
    while len(json.dumps(out)) > MAX_RECORD_CHARS:
        big = max(out, key=lambda k: len(json.dumps(out[k])))
        value = out[big]
        if isinstance(value, list) and value:
            out[big] = value[: len(value) // 2]
        elif isinstance(value, str) and value:
            out[big] = value[: len(value) // 2]
        else:
            out.pop(big)
    return out


def _scalar(value: Any, limit: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value if not isinstance(value, int) or abs(value) < 2**63 else _text(value, limit)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return _text(value, limit)


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text[:limit].replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")
