"""arXiv through the `arxiv` library (arxiv.py): `arxiv.Client` against the Atom API
`GET {arxiv_url}/query?search_query=…&id_list=…&start=0&max_results=…`, the default base
being https://export.arxiv.org/api.

The client's `query_url_format` points at `[literature] arxiv_url`; its requests session gets
nightlab's bounded adapter (net.session: a timeout on every request, 429/5xx retried with
backoff and a capped Retry-After, a body cap) and a hook that refuses an answer that is not a
well-formed Atom feed (arxiv.py itself would log a malformed feed and return no papers). The
library's own retries are off (they have no backoff); its 3-second politeness delay between
two requests of one source is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nightlab.agents.literature import net
from nightlab.agents.literature.net import failure
from nightlab.agents.literature.paper import Paper

if TYPE_CHECKING:
    from nightlab.config import LiteratureSection

NAME = "arxiv"
DEFAULT_URL = "https://export.arxiv.org/api"
ATOM = "{http://www.w3.org/2005/Atom}"


def _check_feed(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A response hook: a 200 answer must be an Atom feed, or the search fails here."""
    if response.status_code != 200:
        return response
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise net.LiteratureError(f"{NAME}: malformed answer (not XML: {exc})") from None
    if root.tag != f"{ATOM}feed":
        raise net.LiteratureError(f"{NAME}: malformed answer (<{root.tag[:80]}>, not a feed)")
    return response


class ArxivSource:
    """Search and look up arXiv preprints."""

    name = NAME

    def __init__(
        self, section: LiteratureSection, *, timeout: float = net.TIMEOUT,
        retries: int = net.RETRIES, delay: float = 3.0,
    ) -> None:  # fmt: skip
        try:
            import arxiv
        except ImportError:
            raise net.missing("arxiv", NAME) from None
        base = (section.arxiv_url or DEFAULT_URL).rstrip("/").removesuffix("/query")
        self._client = arxiv.Client(page_size=100, delay_seconds=delay, num_retries=0)
        self._client.query_url_format = base + "/query?{}"
        self._client._session = net.session(NAME, timeout, retries)
        self._client._session.hooks["response"].append(_check_feed)

    def search(self, query: str, limit: int) -> list[Paper]:
        import arxiv

        text = net.cut_query(query)
        if not text:
            return []
        limit = max(1, min(limit, 100))
        self._client.page_size = limit  # one request for `limit` papers, not a page of 100
        return self._run(arxiv.Search(query=text, max_results=limit))[:limit]

    def get(self, key: str) -> Paper | None:
        import arxiv

        kind, _, value = key.partition(":")
        ident = net.arxiv_id(value) if kind == "arxiv" else None
        if ident is None:
            return None
        found = [p for p in self._run(arxiv.Search(id_list=[ident], max_results=1))
                 if p.arxiv == ident]  # fmt: skip
        return found[0] if found else None

    def _run(self, search: Any) -> list[Paper]:
        import arxiv

        results: list[Any] = []
        try:
            for result in self._client.results(search):
                results.append(result)
        except arxiv.UnexpectedEmptyPageError:
            if not results:  # a later page came back empty: keep the first one's papers
                raise failure(NAME, LookupError("an empty page of results")) from None
        except Exception as exc:  # the library's, requests', or the feed check's
            raise failure(NAME, exc) from None
        return [p for p in (to_paper(r) for r in results) if p is not None]


def to_paper(result: Any) -> Paper | None:
    """An `arxiv.Result` as a Paper; None for an entry without an id or a title (arXiv
    answers an unknown id with an error entry)."""
    ident = net.arxiv_id(str(getattr(result, "entry_id", "") or ""))
    title = net.text(getattr(result, "title", None), net.TITLE_CHARS)
    if ident is None or title is None or title.lower() == "error":
        return None
    published = getattr(result, "published", None)
    names = [getattr(a, "name", None) for a in (getattr(result, "authors", None) or [])]
    return Paper(
        title=title,
        authors=net.authors(names),
        year=net.year(getattr(published, "year", None)),
        venue=net.text(getattr(result, "journal_ref", None), net.VENUE_CHARS) or "arXiv",
        abstract=net.abstract(getattr(result, "summary", None)),
        arxiv=ident,
        doi=net.doi(getattr(result, "doi", None)),
        url=f"https://arxiv.org/abs/{ident}",
        sources=[NAME],
    )
