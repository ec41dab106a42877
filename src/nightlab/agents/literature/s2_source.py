"""Semantic Scholar through the `semanticscholar` library: `SemanticScholar(api_url=…)` builds
the Graph API requests, `GET {semanticscholar_url}/graph/v1/paper/search?query=…&fields=…`
and `GET {semanticscholar_url}/graph/v1/paper/{id}` (`<paperId>`, `ARXIV:…`, `DOI:…`), the
default base being https://api.semanticscholar.org.

The library's own transport retries a 429 for minutes (up to 10 tries, 5 to 60 s apart,
Retry-After ignored) and a 5xx not at all; so its requester is replaced by `_Requester`, which
keeps the library's URLs and parsing and sends each request with httpx under nightlab's
bounds: a timeout, 429/5xx retried with backoff and the server's Retry-After (capped), a body
cap, and one LiteratureError line for everything else. The query is URL-encoded before the
library sees it (it pastes it into the query string as it is).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from nightlab.agents.literature import net
from nightlab.agents.literature.net import failure
from nightlab.agents.literature.paper import LiteratureError, Paper

if TYPE_CHECKING:
    from nightlab.config import LiteratureSection

NAME = "semanticscholar"
DEFAULT_URL = "https://api.semanticscholar.org"
FIELDS = ["paperId", "externalIds", "title", "authors", "year", "venue", "journal",
          "abstract", "url", "citationCount"]  # fmt: skip
PAPER_ID = re.compile(r"[0-9a-f]{40}")


def _requester(timeout: float, retries: int) -> Any:
    """An ApiRequester for the library, sending through httpx under nightlab's bounds."""
    import httpx
    from semanticscholar.ApiRequester import ApiRequester
    from semanticscholar.SemanticScholarException import ObjectNotFoundException

    class Requester(ApiRequester):
        async def get_data_async(
            self, url: str, parameters: str, headers: dict, payload: dict | None = None
        ) -> dict | list:
            method = "POST" if payload else "GET"
            async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=True) as c:
                for attempt in range(retries + 1):
                    try:  # the whole answer in time: a slow drip never trips a read timeout
                        status, wait, body = await asyncio.wait_for(
                            _send(c, method, url, parameters, headers, payload), net.DEADLINE
                        )
                    except TimeoutError:
                        raise LiteratureError(
                            f"{NAME}: no answer in time ({net.DEADLINE:g} s)"
                        ) from None
                    if status not in net.RETRY_STATUSES or attempt == retries:
                        break
                    await asyncio.sleep(wait if wait is not None else net.BACKOFF * 2**attempt)
            if status == 404:
                raise ObjectNotFoundException("not found")
            if status != 200:
                raise LiteratureError(f"{NAME}: HTTP {status}")
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise LiteratureError(f"{NAME}: malformed answer ({type(exc).__name__})") from None
            if "/paper/search" in url and not (
                isinstance(data, dict) and isinstance(data.get("data", []), list)
            ):
                raise LiteratureError(f"{NAME}: malformed answer (no list of papers)")
            if not isinstance(data, dict):
                raise LiteratureError(f"{NAME}: malformed answer ({type(data).__name__})")
            if "/paper/search" in url:  # only well-typed fields reach the library's parser
                return {**data, "data": [_clean(r) for r in data.get("data", [])[:100]]}
            return _clean(data)

    async def _send(
        client: Any, method: str, url: str, parameters: str, headers: dict, payload: Any
    ) -> tuple[int, float | None, bytes]:
        request = client.build_request(
            method, url, params=parameters.lstrip("&"), headers=headers, json=payload
        )
        response = await client.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > net.MAX_BODY:
                    raise LiteratureError(f"{NAME}: answer over {net.MAX_BODY // 2**20} MiB")
        finally:
            await response.aclose()
        wait = net.retry_after(response.headers.get("Retry-After"))
        return response.status_code, wait, bytes(body)

    return Requester(timeout)  # its retry flag is unused: get_data_async is ours


class SemanticScholarSource:
    """Search and look up papers in Semantic Scholar."""

    name = NAME

    def __init__(
        self, section: LiteratureSection, *, timeout: float = net.TIMEOUT,
        retries: int = net.RETRIES,
    ) -> None:  # fmt: skip
        try:
            from semanticscholar import SemanticScholar
        except ImportError:
            raise net.missing("semanticscholar", NAME) from None
        base = (section.semanticscholar_url or DEFAULT_URL).rstrip("/")
        # no api_key: nothing secret leaves the machine
        self._client = SemanticScholar(timeout=timeout, api_url=base, retry=False)
        self._client._AsyncSemanticScholar._requester = _requester(timeout, retries)

    def search(self, query: str, limit: int) -> list[Paper]:
        text = net.cut_query(query)
        if not text:
            return []
        limit = max(1, min(limit, 100))
        try:
            results = self._client.search_paper(quote_plus(text), limit=limit, fields=FIELDS)
            items = list(results.items[:limit])
        except Exception as exc:
            raise failure(NAME, exc) from None
        return [p for p in (to_paper(getattr(i, "raw_data", None)) for i in items) if p]

    def get(self, key: str) -> Paper | None:
        from semanticscholar.SemanticScholarException import ObjectNotFoundException

        kind, _, value = key.partition(":")
        value = value.strip()
        if kind == "s2" and PAPER_ID.fullmatch(value):
            ident = value
        elif kind == "arxiv" and (found := net.arxiv_id(value)):
            ident = f"ARXIV:{found}"
        elif kind == "doi" and (found := net.doi(value)):
            ident = "DOI:" + quote(found, safe="/:;()._-")
        else:
            return None
        try:
            paper = self._client.get_paper(ident, fields=FIELDS)
        except ObjectNotFoundException:
            return None
        except Exception as exc:
            raise failure(NAME, exc) from None
        return to_paper(getattr(paper, "raw_data", None))


def _clean(record: Any) -> dict[str, Any]:
    """A paper record with only the fields nightlab reads, each of the type the library's
    parser expects (a wrong-typed field is dropped, not a reason to lose the whole page)."""
    if not isinstance(record, dict):
        return {}
    out = {k: v for k, v in record.items() if k in ("paperId", "title", "venue", "abstract",
           "url") and isinstance(v, str)}  # fmt: skip
    out |= {k: v for k, v in record.items() if k in ("year", "citationCount")
            and net.integer(v) is not None}  # fmt: skip
    ids = record.get("externalIds")
    if isinstance(ids, dict):
        out["externalIds"] = {k: v for k, v in ids.items() if isinstance(v, str)}
    journal = record.get("journal")
    if isinstance(journal, dict) and isinstance(journal.get("name"), str):
        out["journal"] = {"name": journal["name"]}
    people = record.get("authors")
    if isinstance(people, list):
        out["authors"] = [{"name": a["name"]} for a in people[: net.MAX_AUTHORS]
                          if isinstance(a, dict) and isinstance(a.get("name"), str)]  # fmt: skip
    return out


def to_paper(data: Any) -> Paper | None:
    """A Graph API paper (a dict) as a Paper; None for one without an id or a title."""
    if not isinstance(data, dict):
        return None
    ident = data.get("paperId")
    title = net.text(data.get("title"), net.TITLE_CHARS)
    if not (isinstance(ident, str) and PAPER_ID.fullmatch(ident)) or title is None:
        return None
    ids = data.get("externalIds") if isinstance(data.get("externalIds"), dict) else {}
    people = data.get("authors") if isinstance(data.get("authors"), list) else []
    journal = data.get("journal") if isinstance(data.get("journal"), dict) else {}
    return Paper(
        title=title,
        authors=net.authors(
            [a.get("name") for a in people[: net.MAX_AUTHORS] if isinstance(a, dict)]
        ),  # fmt: skip
        year=net.year(data.get("year")),
        venue=net.text(data.get("venue"), net.VENUE_CHARS)
        or net.text(journal.get("name"), net.VENUE_CHARS),
        abstract=net.abstract(data.get("abstract")),
        arxiv=net.arxiv_id(ids.get("ArXiv")),
        doi=net.doi(ids.get("DOI")),
        s2=ident,
        url=net.url(data.get("url")) or f"https://www.semanticscholar.org/paper/{ident}",
        citations=net.integer(data.get("citationCount")),
        sources=[NAME],
    )
