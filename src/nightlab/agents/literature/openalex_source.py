"""OpenAlex through the `pyalex` library: `pyalex.Works` builds the requests of the REST API,
`GET {openalex_url}/works?search=…&per-page=…&select=…` and `GET {openalex_url}/works/{id}`
(a `W…` id or `doi:…`), the default base being https://api.openalex.org.

pyalex keeps its settings in a module-wide `config` and, in its recent versions, writes
api.openalex.org into every URL whatever `config.openalex_url` says; so the URL pyalex builds
is moved onto `[literature] openalex_url` here, and fetched with nightlab's bounded session
(net.session: a timeout on every request, 429/5xx retried with backoff and a capped
Retry-After, a body cap), not with pyalex's own (no timeout). The answer's JSON is checked
field by field; the abstract is rebuilt from OpenAlex's inverted index.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from nightlab.agents.literature import net
from nightlab.agents.literature.net import failure
from nightlab.agents.literature.paper import ABSTRACT_CHARS, LiteratureError, Paper

if TYPE_CHECKING:
    from nightlab.config import LiteratureSection

NAME = "openalex"
DEFAULT_URL = "https://api.openalex.org"
SELECT = ("id,doi,title,display_name,publication_year,authorships,primary_location,"
          "locations,cited_by_count,abstract_inverted_index")  # fmt: skip
WORK_ID = re.compile(r"(?:https?://openalex\.org/)?(W\d{1,15})", re.I)
MAX_WORDS = 2000  # an inverted index places words at positions below this


class OpenAlexSource:
    """Search and look up works in OpenAlex."""

    name = NAME

    def __init__(
        self, section: LiteratureSection, *, timeout: float = net.TIMEOUT,
        retries: int = net.RETRIES,
    ) -> None:  # fmt: skip
        try:
            import pyalex
        except ImportError:
            raise net.missing("pyalex", NAME) from None
        self._base = (section.openalex_url or DEFAULT_URL).rstrip("/")
        pyalex.config.openalex_url = self._base  # what older pyalex versions build on
        self._session = net.session(NAME, timeout, retries)

    def search(self, query: str, limit: int) -> list[Paper]:
        import pyalex

        text = net.cut_query(query)
        if not text:
            return []
        limit = max(1, min(limit, 100))
        body = self._fetch(pyalex.Works().search(text).url, {"per-page": limit})
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise LiteratureError(f"{NAME}: malformed answer (no list of results)")
        return [p for p in (to_paper(w) for w in results[:limit]) if p is not None]

    def get(self, key: str) -> Paper | None:
        import pyalex

        kind, _, value = key.partition(":")
        if kind == "openalex" and (match := WORK_ID.fullmatch(value.strip())):
            ident = match.group(1).upper()
        elif kind == "doi" and (found := net.doi(value)):
            ident = f"doi:{found}"
        else:
            return None
        body = self._fetch(pyalex.Works(params=ident).url, {}, missing_ok=True)
        if body is None:
            return None
        if not isinstance(body, dict):
            raise LiteratureError(f"{NAME}: malformed answer (not a work)")
        return to_paper(body)

    def _fetch(self, built: str, extra: dict[str, Any], missing_ok: bool = False) -> Any:
        """GET the URL pyalex built, moved onto the configured base; the parsed JSON, or
        None for a 404 when `missing_ok`."""
        parts = urlsplit(built)
        at = parts.path.find("/works")
        query = "&".join(q for q in (parts.query, urlencode({**extra, "select": SELECT})) if q)
        url = f"{self._base}{parts.path[at:]}?{query}"
        try:
            response = self._session.get(url, headers={"Accept": "application/json"})
        except Exception as exc:
            raise failure(NAME, exc) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise LiteratureError(f"{NAME}: HTTP {response.status_code}")
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise LiteratureError(f"{NAME}: malformed answer ({type(exc).__name__})") from None


def rebuild_abstract(index: Any) -> str:
    """The abstract from OpenAlex's inverted index ({word: [positions]}); "" when the index
    is not one. Positions are bounded, so a hostile index cannot make a huge string."""
    if not isinstance(index, dict):
        return ""
    words: dict[int, str] = {}
    for word, positions in list(index.items())[: MAX_WORDS * 2]:
        if not isinstance(word, str) or not isinstance(positions, list):
            continue
        for at in positions[:MAX_WORDS]:
            if net.integer(at, 0, MAX_WORDS - 1) is not None:
                words[at] = word[:100]
    return net.abstract(" ".join(words[i] for i in sorted(words)))[:ABSTRACT_CHARS]


def _arxiv_of(work: dict[str, Any], doi: str | None) -> str | None:
    """An arXiv id from the DataCite DOI (10.48550/arxiv.…) or an arxiv.org location."""
    if doi and doi.startswith("10.48550/arxiv."):
        return net.arxiv_id(doi.removeprefix("10.48550/arxiv."))
    locations = work.get("locations")
    for location in [work.get("primary_location"), *(locations if isinstance(locations, list)
                                                       else [])][:20]:  # fmt: skip
        page = location.get("landing_page_url") if isinstance(location, dict) else None
        if isinstance(page, str) and "arxiv.org/abs/" in page:
            return net.arxiv_id(page)
    return None


def to_paper(work: Any) -> Paper | None:
    """An OpenAlex work (a dict) as a Paper; None for one without an id or a title."""
    if not isinstance(work, dict):
        return None
    ident = work.get("id")
    match = WORK_ID.fullmatch(ident.strip()) if isinstance(ident, str) else None
    title = net.text(work.get("title"), net.TITLE_CHARS) or net.text(
        work.get("display_name"), net.TITLE_CHARS
    )
    if match is None or title is None:
        return None
    authorships = work.get("authorships")
    names = [
        a.get("author", {}).get("display_name")
        for a in (authorships if isinstance(authorships, list) else [])[: net.MAX_AUTHORS]
        if isinstance(a, dict) and isinstance(a.get("author"), dict)
    ]
    primary = work.get("primary_location")
    source = primary.get("source") if isinstance(primary, dict) else None
    doi = net.doi(work.get("doi"))
    landing = primary.get("landing_page_url") if isinstance(primary, dict) else None
    return Paper(
        title=title,
        authors=net.authors(names),
        year=net.year(work.get("publication_year")),
        venue=net.text(source.get("display_name"), net.VENUE_CHARS)
        if isinstance(source, dict) else None,
        abstract=rebuild_abstract(work.get("abstract_inverted_index")),
        arxiv=_arxiv_of(work, doi),
        doi=doi,
        openalex=match.group(1).upper(),
        url=net.url(f"https://doi.org/{doi}" if doi else None) or net.url(landing)
        or f"https://openalex.org/{match.group(1).upper()}",
        citations=net.integer(work.get("cited_by_count")),
        sources=[NAME],
    )  # fmt: skip
