"""The report's "Related work": the papers the night's decisions and mentor reviews cited
(from the lab's literature cache), with links, what cited each, and the searches run.

A cited id the cache does not know is listed as such: a model may invent one, and the
report says so rather than dressing it up."""

from __future__ import annotations

from contextlib import closing
from typing import Any

from nightlab.report.data import Night
from nightlab.report.doc import Para, Section, Table
from nightlab.store import queries, read

MAX_LISTED = 50  # papers in the table


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
    for key, who in list(cites.items())[:MAX_LISTED]:
        p = papers.get(key)
        if p is None:
            rows.append([key, "not in the lab's literature cache (unverified)", "", ", ".join(who)])
            continue
        title = str(p.get("title") or key)
        url = p.get("url")
        authors = p.get("authors") or []
        by = (str(authors[0]) + (" et al." if len(authors) > 1 else "")) if authors else ""
        shown = f"[{title}]({url})" if isinstance(url, str) and url.startswith("http") else title
        rows.append([key, f"{shown} — {by} ({p.get('year') or 'n.d.'})", str(p.get("venue") or ""),
                     ", ".join(dict.fromkeys(who))])  # fmt: skip
    if rows:
        part.blocks.append(Table(["id", "paper", "venue", "cited by"], rows))
    return part
