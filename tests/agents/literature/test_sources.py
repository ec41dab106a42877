"""The three sources against a local server that answers like the real APIs (servers.py,
recorded bodies in fixtures/): normalised papers, lookups, dedupe across two sources, and
every ordinary failure (429 with Retry-After, 5xx, malformed answers, a hang, a dead port)
ending in one LiteratureError line within its bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nightlab.agents.literature import LiteratureError, dedupe
from nightlab.agents.literature.arxiv_source import ArxivSource
from nightlab.agents.literature.openalex_source import OpenAlexSource
from nightlab.agents.literature.s2_source import SemanticScholarSource
from nightlab.config import LiteratureSection

from .servers import Library, dead_url

KINDS = {"arxiv": ArxivSource, "openalex": OpenAlexSource, "semanticscholar": SemanticScholarSource}
URL_KEY = {kind: f"{kind}_url" for kind in KINDS}
QUERY_PARAM = {"arxiv": "search_query", "openalex": "search", "semanticscholar": "query"}
GARBLED = {
    "arxiv": [b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><entry><ti",
              b"<html><body>Service Unavailable</body></html>", b"not xml at all"],
    "openalex": [b'{"meta": {"count": 3}, "results": [{"id": "https://openalex.org/W1", "ti',
                 b'{"meta": {}, "results": "nope"}', b"[1, 2, 3]"],
    "semanticscholar": [b'{"total": 3, "offset": 0, "data": [{"paperId": "2d56',
                        b'{"total": 3, "data": {"paperId": 7}}', b'"just a string"'],
}  # fmt: skip


@pytest.fixture
def library() -> Iterator[Library]:
    with Library() as lib:
        yield lib


def make(kind: str, base: str, **kw: Any) -> Any:
    section = LiteratureSection(sources=[kind], **{URL_KEY[kind]: base})
    extra = {"delay": 0.0} if kind == "arxiv" else {}
    return KINDS[kind](section, **{"timeout": 2.0, "retries": 2, **extra, **kw})


# ------------------------------------------------------------------------ the happy path
def test_arxiv_search_is_normalised(library: Library) -> None:
    papers = make("arxiv", library.url + "/api").search("testing deep learning", 8)
    assert len(papers) == 3
    first = papers[0]
    assert first.arxiv == "2202.12139" and first.doi == "10.1109/icstw55395.2022.00035"
    assert first.title.startswith("Testing Deep Learning Models: A First Comparative Study")
    assert first.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert first.year == 2022 and first.url == "https://arxiv.org/abs/2202.12139"
    assert first.venue and first.venue.startswith("Artificial Intelligence in Software Testing")
    assert first.abstract.startswith("Deep Learning (DL) has revolutionized")
    assert first.sources == ["arxiv"] and first.key == "arxiv:2202.12139"


def test_arxiv_get(library: Library) -> None:
    source = make("arxiv", library.url + "/api")
    paper = source.get("arxiv:1605.08386v1")
    assert paper and paper.title == "Heat-bath random walks with Markov bases"
    assert paper.arxiv == "1605.08386" and paper.year == 2016
    assert library.requests[-1].query["id_list"] == ["1605.08386"]
    assert source.get("arxiv:1706.03762") is None  # an empty feed
    n = len(library.requests)
    assert source.get("doi:10.1/x") is None and source.get("arxiv:not an id") is None
    assert len(library.requests) == n  # keys it cannot look up cost no request


def test_openalex_search_is_normalised(library: Library) -> None:
    papers = make("openalex", library.url).search("open access", 8)
    assert [p.openalex for p in papers] == ["W2741809807", "W4312307182", "W4206759534"]
    oa = papers[0]
    assert oa.title.startswith("The state of OA: a large-scale analysis")
    assert oa.doi == "10.7717/peerj.4375" and oa.year == 2018 and oa.venue == "PeerJ"
    assert oa.authors[:2] == ["Heather Piwowar", "Jason Priem"] and len(oa.authors) == 9
    assert oa.citations == 562 and oa.url == "https://doi.org/10.7717/peerj.4375"
    assert oa.abstract.startswith("Despite growing interest in Open Access (OA)")
    assert "  " not in oa.abstract and oa.sources == ["openalex"]
    assert library.requests[-1].query["per-page"] == ["8"]


def test_openalex_get(library: Library) -> None:
    source = make("openalex", library.url)
    by_id = source.get("openalex:W2741809807")
    by_doi = source.get("doi:https://doi.org/10.7717/PEERJ.4375")
    assert by_id and by_doi and by_id == by_doi and by_id.openalex == "W2741809807"
    assert library.requests[-1].path == "/works/doi:10.7717/peerj.4375"
    assert source.get("openalex:W1") is None  # a 404
    assert source.get("s2:abc") is None and source.get("arxiv:1605.08386") is None


def test_s2_search_is_normalised(library: Library) -> None:
    papers = make("semanticscholar", library.url).search("differences in differences", 8)
    assert len(papers) == 3
    did = papers[0]
    assert did.title == "How Much Should We Trust Differences-in-Differences Estimates?"
    assert did.s2 == "c31c87c591a25c64fbaa82e8ac6a81831b6ac7ce" and did.doi == "10.2139/ssrn.288970"
    assert did.authors[:3] == ["Marianne Bertrand", "E. Duflo", "S. Mullainathan"]
    assert did.year == 2001 and isinstance(did.citations, int) and did.citations > 1000
    assert did.sources == ["semanticscholar"]
    assert library.requests[-1].path == "/graph/v1/paper/search"


def test_s2_get(library: Library) -> None:
    source = make("semanticscholar", library.url)
    paper = source.get("doi:10.1093/MIND/LIX.236.433")
    assert paper and paper.title == "Computing Machinery and Intelligence"
    assert paper.s2 == "2d5673caa9e6af3a7b82a43f19ee920992db07ad"
    assert paper.doi == "10.1093/mind/lix.236.433" and paper.authors == ["A. Turing"]
    assert paper.year == 1950 and paper.venue == "The Philosophy of Artificial Intelligence"
    assert source.get("s2:2d5673caa9e6af3a7b82a43f19ee920992db07ad") == paper
    assert source.get("arxiv:1706.03762") is None  # a 404
    assert library.requests[-1].path == "/graph/v1/paper/ARXIV:1706.03762"
    assert source.get("openalex:W1") is None


def test_dedupe_across_two_sources(library: Library) -> None:
    found = make("arxiv", library.url).search("testing", 8)
    found += make("openalex", library.url).search("testing", 8)
    merged = dedupe(found)
    assert len(merged) == len(found) - 1
    one = next(p for p in merged if p.arxiv == "2202.12139")
    assert one.openalex == "W4312307182" and one.doi == "10.1109/icstw55395.2022.00035"
    assert one.sources == ["arxiv", "openalex"]
    assert {"arxiv:2202.12139", "openalex:W4312307182"} <= set(one.ids())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_proxy_prefix_is_honoured(library: Library, kind: str) -> None:
    assert make(kind, library.url + "/proxy/lit/").search("graphs", 2)
    assert library.requests[-1].path.startswith("/proxy/lit/")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_hostile_query_is_encoded_not_injected(library: Library, kind: str) -> None:
    hostile = 'neural "nets" & max_results=9999&id_list=1 #frag ünïcødé ∑ ' + "x" * 10_000
    make(kind, library.url).search(hostile, 3)
    seen = library.requests[-1]
    sent = seen.query[QUERY_PARAM[kind]][0]
    assert sent.startswith('neural "nets" & max_results=9999&id_list=1 #frag ünïcødé ∑ xxx')
    assert len(sent) <= 500  # cut before it is sent
    assert "9999" not in str({k: v for k, v in seen.query.items() if k != QUERY_PARAM[kind]})
    assert "#" not in seen.path and "ü" not in seen.raw_query  # percent-encoded


# ------------------------------------------------------------------------ failures
@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_429_then_success_honours_retry_after(library: Library, kind: str) -> None:
    library.fail(429, times=1, retry_after="1")
    started = time.monotonic()
    assert make(kind, library.url).search("graphs", 2)
    first, second = library.requests[-2:]
    assert second.at - first.at >= 0.95 and time.monotonic() - started < 10


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("status", [500, 503])
def test_5xx_then_success_retries(library: Library, kind: str, status: int) -> None:
    library.fail(status, times=2)
    assert make(kind, library.url).search("graphs", 2)
    assert len(library.requests) == 3


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_persistent_5xx_is_one_error(library: Library, kind: str) -> None:
    library.fail(502, times=10)
    with pytest.raises(LiteratureError, match=f"^{kind}: ") as err:
        make(kind, library.url, retries=1).search("graphs", 2)
    assert "\n" not in str(err.value) and len(library.requests) == 2


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_malformed_answer_is_one_error(library: Library, kind: str, which: int) -> None:
    library.garble(GARBLED[kind][which])
    with pytest.raises(LiteratureError, match=f"^{kind}: ") as err:
        make(kind, library.url).search("graphs", 2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_huge_retry_after_is_capped_and_a_huge_body_refused(
    library: Library, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nightlab.agents.literature import net

    monkeypatch.setattr(net, "MAX_BODY", 50_000)
    monkeypatch.setattr(net, "RETRY_AFTER_CAP", 0.2)
    library.fail(429, times=1, retry_after="86400")
    library.garble(b'{"data": [' + b" " * 200_000 + b"]}")
    started = time.monotonic()
    with pytest.raises(LiteratureError, match=f"^{kind}: .*(MiB|malformed)"):
        make(kind, library.url).search("graphs", 2)
    assert time.monotonic() - started < 5


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_hanging_server_fails_within_the_timeout(library: Library, kind: str) -> None:
    library.hang(times=5)
    started = time.monotonic()
    with pytest.raises(LiteratureError, match=f"^{kind}: "):
        make(kind, library.url, timeout=1.0).search("graphs", 2)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_dead_port_fails_quickly(kind: str) -> None:
    started = time.monotonic()
    with pytest.raises(LiteratureError, match=f"^{kind}: "):
        make(kind, dead_url()).search("graphs", 2)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_missing_library_names_the_install(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = {"arxiv": "arxiv", "openalex": "pyalex", "semanticscholar": "semanticscholar"}[kind]
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(LiteratureError, match=r"pip install 'nightlab\[literature\]'"):
        make(kind, "http://127.0.0.1:9")


def test_hostile_fields_are_dropped_or_cut_not_fatal() -> None:
    from nightlab.agents.literature import openalex_source, s2_source

    huge = "T" * 100_000
    work = {
        "id": "https://openalex.org/W1", "title": huge, "publication_year": "2020",
        "authorships": [{"author": {"display_name": 7}}, "x", {"author": {"display_name": "Ada"}}],
        "cited_by_count": True, "doi": "javascript:alert(1)",
        "abstract_inverted_index": {"word": [0, 10**9, "x"], "second": [1], "3": "no"},
        "primary_location": {"landing_page_url": "https://arxiv.org/abs/2106.09685v2"},
    }  # fmt: skip
    paper = openalex_source.to_paper(work)
    assert paper and len(paper.title) == 500 and paper.year is None and paper.authors == ["Ada"]
    assert paper.citations is None and paper.doi is None and paper.abstract == "word second"
    assert paper.arxiv == "2106.09685"
    assert openalex_source.to_paper({"id": "W1"}) is None  # no title
    assert openalex_source.to_paper(["W1"]) is None
    record = {"paperId": "a" * 40, "title": "Fine", "authors": [{"name": 5}, 3, {"name": "Bo"}],
              "year": "1999", "externalIds": [1], "journal": "J", "citationCount": -4}  # fmt: skip
    cleaned = s2_source._clean(record)
    paper = s2_source.to_paper(cleaned)
    assert paper and paper.authors == ["Bo"] and paper.year is None and paper.citations is None


def test_one_bad_s2_record_does_not_lose_the_page(library: Library) -> None:
    import json

    body = json.loads((Path(__file__).parent / "fixtures" / "s2_search.json").read_text())
    body["data"][1]["authors"] = [1, 2, {"name": None}]
    body["data"][2] = "not a paper"
    library.garble(json.dumps(body).encode())
    papers = make("semanticscholar", library.url).search("graphs", 8)
    assert [len(p.authors) for p in papers] == [len(body["data"][0]["authors"]), 0]
