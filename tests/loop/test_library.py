"""The Library (loop/library.py) with fake sources on a real SQLite store: the cache saves
requests, failures fall back to it, offline never touches a source, secrets never leave."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from nightlab.agents.literature import LiteratureError, Paper
from nightlab.loop import library as library_module
from nightlab.loop.library import Found, Library

from conftest import make_config

DAY = 86400.0


class Fake:
    """A Source: answers `papers`, or raises `fail`, after `delay` seconds; counts calls."""

    def __init__(self, name="arxiv", papers=(), fail=None, delay=0.0):
        self.name = name
        self.papers = list(papers)
        self.fail = fail
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self.gets: list[str] = []

    def search(self, query, limit):
        self.calls.append((query, limit))
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return self.papers[:limit]

    def get(self, key):
        self.gets.append(key)
        if self.fail is not None:
            raise self.fail
        return next((p for p in self.papers if key in p.ids()), None)


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def paper(title, source="arxiv", **ids):
    return Paper(title=title, authors=["Ann Author", "Bo Two"], year=2021, sources=[source], **ids)



def library(store, *sources, clock=None, report=None, **literature):
    cfg = make_config(literature=literature)
    return Library(cfg, store, list(sources), report, clock=clock or Clock(), timeout_s=2.0)


def count(store, table):
    with sqlite3.connect(store.path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_repeated_query_within_cache_days_makes_no_request(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="2106.09685"), paper("QLoRA", arxiv="2305.14314")])
    clock = Clock()
    lib = library(store, arxiv, clock=clock, cache_days=30)
    first = lib.search("Low-rank  adaptation")
    assert isinstance(first, Found) and first.cached is False and first.notes == []
    assert [p.title for p in first.papers] == ["LoRA", "QLoRA"]
    assert arxiv.calls == [("Low-rank adaptation", 8)]
    clock.now += 29 * DAY
    again = lib.search("low-rank ADAPTATION ")
    assert again.cached is True and [p.key for p in again.papers] == [p.key for p in first.papers]
    assert len(arxiv.calls) == 1
    # a new Library on the same store (another process, the next night) uses the cache too
    assert library(store, arxiv, clock=clock).search("low-rank adaptation").cached
    assert len(arxiv.calls) == 1


def test_a_query_after_cache_days_asks_again(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="1")])
    clock = Clock()
    lib = library(store, arxiv, clock=clock, cache_days=30)
    lib.search("lora")
    clock.now += 31 * DAY
    arxiv.papers = [paper("LoRA v2", arxiv="2")]
    found = lib.search("lora")
    assert found.cached is False and [p.title for p in found.papers] == ["LoRA v2"]
    assert len(arxiv.calls) == 2


def test_a_failing_source_falls_back_to_the_stale_cache_with_one_note(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="1")])
    clock = Clock()
    heard: list[str] = []
    lib = library(store, arxiv, clock=clock, report=heard.append, cache_days=1)
    lib.search("lora")
    clock.now += 3 * DAY
    arxiv.fail = LiteratureError("arxiv: timeout")
    found = lib.search("lora")
    assert [p.title for p in found.papers] == ["LoRA"]
    assert found.notes == ["arxiv: timeout; served the cache from 3 days ago"]
    assert heard == found.notes
    assert len(arxiv.calls) == 2
    # backing off: the next search does not hammer the failing source
    again = lib.search("lora")
    assert len(arxiv.calls) == 2 and again.cached is True
    assert again.notes[0].startswith("arxiv: timeout (next try in 30s); served the cache")
    clock.now += 31
    arxiv.fail = None
    assert lib.search("lora").cached is False and len(arxiv.calls) == 3


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        (LiteratureError("openalex: HTTP 429 Too Many Requests"), "HTTP 429 Too Many Requests"),
        (LiteratureError("openalex: HTTP 503"), "HTTP 503"),
        (RuntimeError("malformed JSON\nat line 1"), "RuntimeError: malformed JSON"),
    ],
)
def test_failures_without_a_cache_say_so_and_never_raise(store, fail, said):
    lib = library(store, Fake("openalex", fail=fail))
    found = lib.search("diffusion")
    assert found.papers == [] and found.cached is False
    assert found.notes == [f"openalex: {said}; nothing cached"]


def test_a_silent_source_is_given_up_after_the_time_limit(store):
    slow = Fake(papers=[paper("Late", arxiv="9")], delay=5.0)
    cfg = make_config()
    lib = Library(cfg, store, [slow], clock=Clock(), timeout_s=0.2)
    started = time.monotonic()
    found = lib.search("anything")
    assert time.monotonic() - started < 3
    assert found.notes == ["arxiv: no answer in 0.2s; nothing cached"]


def test_offline_calls_no_source_and_says_so_in_one_line(store):
    a, b = Fake("arxiv", papers=[paper("X", arxiv="1")]), Fake("openalex")
    lib = library(store, a, b, sources=["arxiv", "openalex"], offline=True)
    found = lib.search("nothing here")
    assert found.papers == [] and found.cached is True
    assert found.notes == ["offline: no cached papers for “nothing here”"]
    assert a.calls == b.calls == []
    online = library(store, a, b, sources=["arxiv", "openalex"])
    assert online.search("nothing here", offline=True).notes == found.notes
    assert a.calls == []


def test_offline_serves_a_stale_cache_with_a_note(store):
    arxiv = Fake(papers=[paper("Old", arxiv="1")])
    clock = Clock()
    lib = library(store, arxiv, clock=clock, cache_days=1)
    lib.search("old")
    clock.now += 5 * 3600
    assert lib.search("old", offline=True).notes == []  # fresh: nothing to say
    clock.now += 2 * DAY
    found = lib.search("old", offline=True)
    assert [p.title for p in found.papers] == ["Old"]
    assert found.notes == ["arxiv: offline; served the cache from 2 days ago"]
    assert len(arxiv.calls) == 1


def test_papers_are_deduplicated_across_sources(store):
    arxiv = Fake("arxiv", papers=[paper("LoRA", arxiv="2106.09685"), paper("A", arxiv="a")])
    alex = Fake("openalex", papers=[
        paper("LoRA: Low-Rank Adaptation", "openalex", arxiv="2106.09685", doi="10.1/lora"),
        paper("B", "openalex", doi="10.1/b"),
    ])  # fmt: skip
    lib = library(store, arxiv, alex, sources=["arxiv", "openalex"], max_results=2)
    found = lib.search("lora")
    assert [p.key for p in found.papers] == ["arxiv:2106.09685", "arxiv:a", "doi:10.1/b"]
    lora = found.papers[0]
    assert lora.doi == "10.1/lora" and lora.sources == ["arxiv", "openalex"]
    assert count(store, "papers") == 3
    assert lib.read("doi:10.1/lora").arxiv == "2106.09685"


def test_at_most_max_results_per_source(store):
    arxiv = Fake(papers=[paper(f"P{i}", arxiv=str(i)) for i in range(20)])
    found = library(store, arxiv, max_results=3).search("many")
    assert len(found.papers) == 3 and arxiv.calls == [("many", 3)]


def test_a_secret_in_the_query_is_removed_before_any_source_sees_it(store, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "hunter2-very-secret")
    monkeypatch.setenv("HF_TOKEN", "tok-abcdef-123456")
    arxiv = Fake(papers=[paper("LoRA", arxiv="1")])
    lib = library(store, arxiv)
    query = "lora hunter2-very-secret sk-ant-abcdefghijklmnopqrstuvwx tok-abcdef-123456 ranks"
    found = lib.search(query)
    assert arxiv.calls == [("lora ranks", 8)]
    assert found.query == "lora ranks"
    assert found.notes == ["query: a secret-looking string was removed before searching"]
    with sqlite3.connect(store.path) as conn:
        stored = conn.execute("SELECT query FROM paper_queries").fetchall()
    assert stored == [("lora ranks",)]


@pytest.mark.parametrize(
    "query", ["", "   \n\t ", "x" * 301, "sk-proj-abcdefghijklmnopqrstuvwxyz", None]
)
def test_a_bad_query_is_refused_before_any_request(store, query):
    arxiv = Fake()
    with pytest.raises(ValueError, match="query|secret"):
        library(store, arxiv).search(query)  # type: ignore[arg-type]
    assert arxiv.calls == []


def test_concurrent_searches_make_one_request_and_one_record(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="1"), paper("B", doi="10.1/b")], delay=0.3)
    lib = library(store, arxiv)
    results: list[Found] = []
    errors: list[BaseException] = []

    def search(q):
        try:
            results.append(lib.search(q))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=search, args=(q,)) for q in ["lora", "LoRA ", "lora"]]
    threads += [threading.Thread(target=search, args=(f"other {i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and len(results) == 7
    assert sorted(q for q, _ in arxiv.calls) == ["lora", "other 0", "other 1", "other 2", "other 3"]
    assert count(store, "paper_queries") == 5
    assert count(store, "papers") == 2
    assert all(len(r.papers) == 2 for r in results)


def test_read_uses_the_cache_then_the_sources(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="2106.09685", doi="10.1/lora")])
    lib = library(store, arxiv)
    assert lib.read("arxiv:2106.09685").title == "LoRA"
    assert arxiv.gets == ["arxiv:2106.09685"]
    assert lib.read("doi:10.1/lora").title == "LoRA"  # cached under its arXiv key
    assert arxiv.gets == ["arxiv:2106.09685"]
    assert lib.read("arxiv:0000.00000") is None
    assert lib.read("arxiv:0000.00001", offline=True) is None
    assert arxiv.gets == ["arxiv:2106.09685", "arxiv:0000.00000"]
    arxiv.fail = LiteratureError("arxiv: HTTP 500")
    assert lib.read("arxiv:1111.11111") is None  # a failure is no exception
    with pytest.raises(ValueError):
        lib.read("  ")


def test_sources_are_made_lazily_and_a_missing_client_is_a_note(store, monkeypatch):
    made: list[str] = []

    def broken(section):
        made.append("yes")
        raise ModuleNotFoundError("No module named 'arxiv'")

    monkeypatch.setattr(library_module, "sources_for", broken)
    lib = Library(make_config(), store, clock=Clock())
    assert lib.names == ["arxiv", "openalex"]
    assert lib.search("q", offline=True).notes == ["offline: no cached papers for “q”"]
    assert made == []
    found = lib.search("q")
    assert found.papers == []
    assert found.notes[0] == "arxiv: ModuleNotFoundError: No module named 'arxiv'; nothing cached"


def test_a_source_answering_junk_is_ignored(store):
    junk = Fake(papers=[paper("Good", arxiv="g")])
    junk.papers.append("not a paper")  # type: ignore[arg-type]
    found = library(store, junk).search("junk")
    assert [p.title for p in found.papers] == ["Good"]
    none = Fake()
    none.search = lambda q, limit: None  # type: ignore[method-assign]
    assert library(store, none).search("none").papers == []


def test_recent_gives_the_latest_queries_with_their_papers(store):
    arxiv = Fake(papers=[paper("LoRA", arxiv="1"), paper("QLoRA", arxiv="2")])
    clock = Clock()
    lib = library(store, arxiv, clock=clock)
    lib.search("first")
    clock.now += 1
    lib.search("second")
    assert [(q, [p.title for p in ps]) for q, ps in lib.recent(1, per_query=1)] == [
        ("second", ["LoRA"])
    ]
