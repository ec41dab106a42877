"""The literature cache (store/papers.py) on a real SQLite file: answers per source and
query with their time, papers found by any of their ids, and bounds on what is kept."""

from __future__ import annotations

import json
import sqlite3

from nightlab.store import papers

DAY = 86400.0



def rec(title: str, **ids: str) -> dict:
    return {"title": title, "authors": ["A. Author"], "year": 2021, "abstract": "Short.", **ids}


def test_put_then_cached_in_rank_order_for_the_normalised_query(store):
    keys = papers.put(store, "arxiv", "  LoRA   Adapters ", [
        rec("LoRA", arxiv="2106.09685"), rec("Adapters", doi="10.1/adapt"), rec("Plain"),
    ], now=1000.0)  # fmt: skip
    assert keys == ["arxiv:2106.09685", "doi:10.1/adapt", "title:plain"]
    got = papers.cached(store, "arxiv", "lora adapters", 30 * DAY, now=1000.0 + DAY)
    assert [p["title"] for p in got] == ["LoRA", "Adapters", "Plain"]
    assert papers.cached(store, "openalex", "lora adapters", 30 * DAY) is None
    assert papers.cached(store, "arxiv", "lora", 30 * DAY) is None


def test_freshness_is_by_max_age_and_stale_serves_any_age(store):
    papers.put(store, "arxiv", "q", [rec("Old", arxiv="1")], now=1000.0)
    assert papers.cached(store, "arxiv", "q", 30 * DAY, now=1000.0 + 29 * DAY) is not None
    assert papers.cached(store, "arxiv", "q", 30 * DAY, now=1000.0 + 31 * DAY) is None
    assert [p["title"] for p in papers.stale(store, "arxiv", "q")] == ["Old"]
    assert papers.stale(store, "arxiv", "other") is None
    when, found = papers.entry(store, "arxiv", "Q")
    assert when == 1000.0 and len(found) == 1


def test_a_newer_answer_replaces_the_older_one(store):
    papers.put(store, "arxiv", "q", [rec("One", arxiv="1")], now=1.0)
    papers.put(store, "arxiv", "Q ", [rec("Two", arxiv="2")], now=2.0)
    assert [p["title"] for p in papers.stale(store, "arxiv", "q")] == ["Two"]
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM paper_queries").fetchone()[0] == 1


def test_an_empty_answer_is_cached_as_empty(store):
    papers.put(store, "arxiv", "nothing", [], now=5.0)
    assert papers.cached(store, "arxiv", "nothing", DAY, now=6.0) == []


def test_a_paper_is_found_by_any_of_its_ids_and_moves_to_its_best_key(store):
    papers.put(store, "openalex", "q", [rec("LoRA", doi="10.5/LoRA", openalex="W1")], now=1.0)
    assert papers.paper(store, "doi:10.5/LoRA")["title"] == "LoRA"
    assert papers.paper(store, "openalex:W1")["doi"] == "10.5/LoRA"
    # arXiv finds the same paper (shared DOI) with its arXiv id: one row, keyed arxiv:…
    papers.put(store, "arxiv", "q", [rec("LoRA", arxiv="2106.09685", doi="10.5/LoRA")], now=2.0)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT key FROM papers").fetchall() == [("arxiv:2106.09685",)]
    for key in ("arxiv:2106.09685", "doi:10.5/LoRA", "openalex:W1", " arxiv:2106.09685 "):
        found = papers.paper(store, key)
        assert found["arxiv"] == "2106.09685" and found["openalex"] == "W1", key
    # the older answer, stored under the old key, still resolves
    assert [p["title"] for p in papers.stale(store, "openalex", "q")] == ["LoRA"]
    assert papers.paper(store, "arxiv:9999.99999") is None


def test_given_ids_are_aliases_too(store):
    record = {**rec("Attention Is All You Need", arxiv="1706.03762"),
              "ids": ["arxiv:1706.03762", "title:attention is all you need"]}  # fmt: skip
    papers.put(store, "arxiv", "attention", [record])
    assert papers.paper(store, "title:attention is all you need")["arxiv"] == "1706.03762"
    assert "ids" not in papers.paper(store, "arxiv:1706.03762")


def test_merge_keeps_sources_and_the_highest_citation_count(store):
    papers.put(store, "a", "q", [{**rec("P", doi="10.1/p"), "sources": ["a"], "citations": 5}])
    papers.put(store, "b", "q", [{**rec("P", doi="10.1/p"), "sources": ["b"], "citations": 3,
                                  "venue": "NeurIPS"}])  # fmt: skip
    found = papers.paper(store, "doi:10.1/p")
    assert found["sources"] == ["b", "a"] and found["citations"] == 5
    assert found["venue"] == "NeurIPS"


def test_recent_lists_the_latest_queries_with_their_top_papers(store):
    papers.put(store, "arxiv", "first", [rec("F1", arxiv="1")], now=1.0)
    papers.put(store, "arxiv", "second", [rec(f"S{i}", arxiv=f"2.{i}") for i in range(5)], now=2.0)
    papers.put(store, "openalex", "second", [rec("S0", arxiv="2.0"), rec("O", doi="9")], now=3.0)
    got = papers.recent(store, 1)
    assert [g["query"] for g in got] == ["second"]
    assert got[0]["sources"] == ["arxiv", "openalex"]
    assert [p["title"] for p in got[0]["papers"]] == ["S0", "S1", "O"]  # interleaved, deduped
    assert [g["query"] for g in papers.recent(store, 5)] == ["second", "first"]
    assert papers.recent(store, 0) == []


def test_bounds_papers_per_query_and_record_size(store):
    many = [rec(f"T{i}", arxiv=f"{i}") for i in range(papers.MAX_PER_QUERY + 50)]
    assert len(papers.put(store, "arxiv", "many", many)) == papers.MAX_PER_QUERY
    huge = {**rec("Huge", arxiv="h"), "abstract": "x" * 1_000_000,
            "authors": [f"Author {i}" * 50 for i in range(10_000)],
            **{f"extra{i}": "y" * 5000 for i in range(100)}}  # fmt: skip
    papers.put(store, "arxiv", "huge", [huge])
    found = papers.paper(store, "arxiv:h")
    assert len(found["abstract"]) <= papers.ABSTRACT_CHARS
    assert len(found["authors"]) <= papers.MAX_LIST
    assert len(json.dumps(found)) <= papers.MAX_RECORD_CHARS
    assert len(found) <= papers.MAX_FIELDS
    long_query = "q" * 5000
    papers.put(store, "arxiv", long_query, [])
    assert papers.stale(store, "arxiv", long_query) == []


def test_hostile_records_are_stored_as_text_or_skipped(store):
    hostile = [
        {"title": 12345, "arxiv": "n1", "authors": "not a list", "year": "2020",
         "venue": {"nested": [1, 2]}, "citations": float("nan"), "url": None},
        {"title": "Ünïcødé ✓ — 論文 \ud800 \x00end", "doi": "10.1/u", "authors": [None, 3, "Zoë"]},
        {"authors": ["no title, no id"]},  # nothing to key it by
        "not a mapping",
        {"title": "Big int", "arxiv": "n2", "citations": 10**30},
    ]  # fmt: skip
    keys = papers.put(store, "arxiv", "hostile", hostile)  # type: ignore[arg-type]
    assert keys == ["arxiv:n1", "doi:10.1/u", "arxiv:n2"]
    first = papers.paper(store, "arxiv:n1")
    assert first["title"] == "12345" and first["citations"] is None
    assert first["venue"] == "{'nested': [1, 2]}"
    second = papers.paper(store, "doi:10.1/u")
    assert second["title"].startswith("Ünïcødé ✓ — 論文 ") and "\x00" not in second["title"]
    assert second["authors"] == [None, 3, "Zoë"]
    assert papers.paper(store, "arxiv:n2")["citations"] == str(10**30)
    with sqlite3.connect(store.path) as conn:  # stored as valid JSON
        for (data,) in conn.execute("SELECT data FROM papers"):
            json.loads(data)


def test_a_title_only_paper_is_keyed_by_its_normalised_title(store):
    papers.put(store, "s2", "q", [{"title": "Déjà  Vu: a Study!"}])
    assert papers.paper(store, "title:deja vu a study")["title"] == "Déjà  Vu: a Study!"


def test_remember_stores_a_paper_without_a_query(store):
    assert papers.remember(store, [rec("Read", arxiv="7")]) == ["arxiv:7"]
    assert papers.paper(store, "arxiv:7")["title"] == "Read"
    assert papers.recent(store, 3) == []


def test_an_agent_flooding_distinct_queries_cannot_grow_the_cache_without_end(store, monkeypatch):
    """Past the caps the oldest answers and papers go, and the answers naming a paper that
    went (never served half); the newest answers stay whole, and a paper an answer brought
    back recently stays however long ago it was first stored."""
    monkeypatch.setattr(papers, "MAX_QUERIES", 40)
    monkeypatch.setattr(papers, "MAX_PAPERS", 100)
    papers.put(store, "arxiv", "the classic", [rec("Classic", arxiv="c")], now=0.0)
    for i in range(1, 301):
        found = [rec(f"P{i}.{j}", doi=f"10.{i}/{j}") for j in range(4)]
        if i % 50 == 0:
            found.append(rec("Classic", arxiv="c"))  # a later answer finds it again
        papers.put(store, "arxiv", f"flood {i}", found, now=float(i))
        papers.remember(store, [rec(f"Read{i}", arxiv=f"r{i}")], now=float(i))
    with sqlite3.connect(store.path) as conn:
        n_queries = conn.execute("select count(*) from paper_queries").fetchone()[0]
        n_papers = conn.execute("select count(*) from papers").fetchone()[0]
        keys = {k for (k,) in conn.execute("select key from papers")}
        orphans = conn.execute(
            "select count(*) from paper_ids where key not in (select key from papers)"
        ).fetchone()[0]
    assert 10 <= n_queries <= 40
    assert 90 <= n_papers <= 100
    assert orphans == 0
    for i in range(1, 301):
        answer = papers.stale(store, "arxiv", f"flood {i}")
        assert answer is None or len(answer) == 4 + (i % 50 == 0), (i, answer)
    assert [p["title"] for p in papers.stale(store, "arxiv", "flood 300")] == [
        "P300.0", "P300.1", "P300.2", "P300.3", "Classic",
    ]  # fmt: skip
    assert papers.paper(store, "arxiv:r300")["title"] == "Read300"
    assert papers.paper(store, "arxiv:c")["title"] == "Classic"
    assert papers.stale(store, "arxiv", "the classic") is None
    assert papers.stale(store, "arxiv", "flood 1") is None
    assert "doi:10.1/0" not in keys
