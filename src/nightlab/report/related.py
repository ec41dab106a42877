"""The report's "Related work": the papers the night's decisions and mentor reviews cited
(from the lab's literature cache), with links, what cited each, and the searches run.

A cited id the cache does not know is listed as such: a model may invent one, and the
report says so rather than dressing it up."""

from __future__ import annotations

from contextlib import closing
from typing import Any

from nightlab.agents.literature import net
from nightlab.report.data import Night
from nightlab.report.doc import Linked, Para, Section, Table
from nightlab.store import queries, read

MAX_LISTED = 50  # papers in the table
_BRACKETS = str.maketrans("[]", "()")


def gather(night: Night) -> dict[str, Any]:
    """{"cites": {id: [who cited it, …]}, "papers": {id: record}, "searches": n}."""
    by_decision = {t["decision_id"]: t["id"] for t in night.trials if t.get("decision_id")}
    cites: dict[str, list[str]] = {}
    for d in night.decisions:
        if not d["accepted"]:
            continue
        for key in (d["body"] or {}).get("cites") or []:
            trial = by_decision.get(d["id"])
            who = f"trial {trial}" if trial else f"{d['action']} [{d['trace_id']}]"
            cites.setdefault(str(key), []).append(who)
    for e in night.mentor:
        for key in (e["data"] or {}).get("cites") or []:
            cites.setdefault(str(key), []).append(f"mentor ({e['data'].get('verdict')})")
    with closing(read.connect(night.paths.db)) as conn:
        papers = queries.papers(conn, list(cites)[:MAX_LISTED])
        searches = len(queries.events(conn, ("research_done",)))
    return {"cites": cites, "papers": papers, "searches": searches}


def section(got: dict[str, Any]) -> Section | None:
    """Related work, when the night cited a paper or ran a search."""
    cites, papers = got["cites"], got["papers"]
    if not cites and not got["searches"]:
        return None
    part = Section("Related work")
    part.blocks.append(Para(
        f"The worker ran {got['searches']} literature search(es); {len(cites)} paper(s) were "
        "cited by the night's decisions and reviews."
    ))  # fmt: skip
    rows = []
    for asked, who in list(cites.items())[:MAX_LISTED]:
        p, key = papers.get(asked), net.text(asked, 300) or "?"  # a mentor's cite is unchecked
        if p is None:
            rows.append([key, "not in the lab's literature cache (unverified)", "", ", ".join(who)])
            continue
        # a cached record is text from a server: one line each, brackets kept out of the
        # link text, and an http(s) link or none
        title = (net.text(p.get("title"), net.TITLE_CHARS) or key).translate(_BRACKETS)
        url = net.url(p.get("url"))
        authors = p.get("authors") if isinstance(p.get("authors"), list) else []
        first = net.text(authors[0], net.NAME_CHARS) if authors else None
        by = (first + (" et al." if len(authors) > 1 else "")) if first else ""
        year = net.text(str(p.get("year") or "n.d."), 10)
        tail = f" — {by} ({year})"
        shown = Linked([(title, url)], tail) if url else f"{title}{tail}"
        rows.append([key, shown, net.text(p.get("venue"), net.VENUE_CHARS)
                     or "", ", ".join(dict.fromkeys(who))])  # fmt: skip
    if rows:
        part.blocks.append(Table(["id", "paper", "venue", "cited by"], rows))
    return part
