"""What the three sources share: the bounds on talking to a service (timeout, retries,
Retry-After, body size) and the validators that turn a hostile answer into clean fields.

Every server is treated as hostile: a body is read up to `MAX_BODY` bytes, a Retry-After is
believed up to `RETRY_AFTER_CAP` seconds, and every field is checked for its type and cut to
a length before it reaches a `Paper`. Heavy imports (requests, urllib3) happen inside the
functions that need them.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from nightlab.agents.literature.paper import ABSTRACT_CHARS, LiteratureError

if TYPE_CHECKING:
    import requests

TIMEOUT = 10.0  # seconds: connect, and each read of the answer
RETRIES = 3  # more tries after the first, on 429 and 5xx only
BACKOFF = 0.5  # seconds: 0.5, 1, 2 between tries when no Retry-After is given
RETRY_AFTER_CAP = 30.0  # a Retry-After above this is cut to it: no server stalls a night
MAX_BODY = 8 * 1024 * 1024  # bytes: a bigger answer is an error, not a memory hog
DEADLINE = 60.0  # seconds for a whole answer: a slow drip never trips a read timeout
RETRY_STATUSES = (429, 500, 502, 503, 504)
QUERY_CHARS = 500  # a query is cut here before it is sent
INSTALL = "pip install 'nightlab[literature]'"

TITLE_CHARS, NAME_CHARS, VENUE_CHARS, URL_CHARS, MAX_AUTHORS = 500, 200, 300, 2000, 50
ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z][a-z.-]{1,20}(?:\.[A-Z]{2})?/\d{7})(v\d+)?")
DOI = re.compile(r"10\.\d{4,9}/\S{1,300}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # terminal escapes, NUL, line breaks


def missing(library: str, service: str) -> LiteratureError:
    """The one line for a client library that is not installed."""
    return LiteratureError(f"{service}: the client library `{library}` is not installed: {INSTALL}")


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            import time

            seconds = parsedate_to_datetime(value).timestamp() - (now or time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def cut_query(query: str) -> str:
    """The query as sent: control characters dropped, cut to QUERY_CHARS."""
    text = "".join(ch if ch.isprintable() else " " for ch in query)
    return " ".join(text.split())[:QUERY_CHARS]


def session(service: str, timeout: float, retries: int) -> requests.Session:
    """A requests session for `service`: every request gets `timeout`, 429/5xx are retried
    `retries` times with backoff (Retry-After honoured, capped), a connection that fails is
    not retried (a dead server fails at once), and an answer over MAX_BODY is refused."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    class CappedRetry(Retry):
        def get_retry_after(self, response: Any) -> float | None:
            return retry_after(response.headers.get("Retry-After"))

    policy = CappedRetry(
        total=retries, connect=0, read=0, other=0, status=retries,
        status_forcelist=RETRY_STATUSES, backoff_factor=BACKOFF, backoff_max=RETRY_AFTER_CAP,
        respect_retry_after_header=True, raise_on_status=False, allowed_methods={"GET"},
    )  # fmt: skip

    class BoundedAdapter(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = (timeout, timeout)
            kwargs["stream"] = True
            response = super().send(request, **kwargs)
            deadline, body = time.monotonic() + DEADLINE, bytearray()
            try:
                while len(body) <= MAX_BODY and (chunk := response.raw.read1(
                        65536, decode_content=True)):  # fmt: skip
                    body += chunk
                    if time.monotonic() > deadline:
                        raise LiteratureError(f"{service}: no answer in time ({DEADLINE:g} s)")
            except LiteratureError:
                response.close()
                raise
            except Exception as exc:  # a reset or a timeout halfway through the body
                response.close()
                raise requests.exceptions.ConnectionError(f"reading the answer: {exc}") from exc
            response.close()
            if len(body) > MAX_BODY:
                raise LiteratureError(f"{service}: answer over {MAX_BODY // 2**20} MiB")
            response._content = bytes(body)
            response._content_consumed = True
            return response

    class Session(requests.Session):
        def get_redirect_target(self, resp: Any) -> str | None:
            """A redirect is followed on the same host only (no hop to another server)."""
            target = super().get_redirect_target(resp)
            there = urlsplit(urljoin(resp.url, target or "")).hostname
            if target and there != urlsplit(resp.url).hostname:
                raise LiteratureError(f"{service}: redirected to another host ({there}): refused")
            return target

    s = Session()
    s.trust_env = True  # proxies from the environment (a cluster's) are honoured
    adapter = BoundedAdapter(max_retries=policy)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def failure(service: str, exc: BaseException) -> LiteratureError:
    """One line for any exception a library raised while talking to `service`."""
    if isinstance(exc, LiteratureError):
        return exc
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:200]
    if "timeout" in name.lower() or "timed out" in text.lower():
        return LiteratureError(f"{service}: no answer in time ({name})")
    return LiteratureError(f"{service}: {name}: {text}" if text else f"{service}: {name}")


# ---------------------------------------------------------------------------- validators
def text(value: Any, limit: int) -> str | None:
    """A string on one line (control characters dropped, whitespace collapsed) cut to
    `limit`; None for anything else or empty."""
    if not isinstance(value, str):
        return None
    out = " ".join(CONTROL.sub(" ", value).split())[:limit]
    return out or None


def integer(value: Any, low: int = 0, high: int = 10**9) -> int | None:
    """An int within [low, high]; None for anything else (bools and floats included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def year(value: Any) -> int | None:
    return integer(value, 1000, 2200)


def url(value: Any) -> str | None:
    """An http(s) URL, with the characters that could end a Markdown link or an HTML
    attribute (brackets, quotes, angle brackets, spaces) percent-encoded; None otherwise."""
    out = text(value, URL_CHARS)
    if not out or not re.match(r"https?://", out, flags=re.I):
        return None
    return quote(out, safe="/:?#@!$&*+,;=%~._-")


def doi(value: Any) -> str | None:
    """A DOI lower-cased, without `https://doi.org/` or `doi:`; None if it is not one."""
    out = text(value, 400)
    if not out:
        return None
    out = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", out, flags=re.I).lower()
    return out if DOI.fullmatch(out) else None


def arxiv_id(value: Any) -> str | None:
    """An arXiv id without version, `arXiv:` or the abs/pdf URL; None if it is not one."""
    out = text(value, 200)
    if not out:
        return None
    out = re.sub(r"^(arxiv:|https?://(export\.)?arxiv\.org/(abs|pdf)/)", "", out, flags=re.I)
    out = out.removesuffix(".pdf")
    match = ARXIV_ID.fullmatch(out)
    return match.group(1) if match else None


def authors(names: list[Any]) -> list[str]:
    """Display names, each cut, at most MAX_AUTHORS; anything not a name is skipped."""
    out = [n for n in (text(name, NAME_CHARS) for name in names[: MAX_AUTHORS * 2]) if n]
    return out[:MAX_AUTHORS]


def abstract(value: Any) -> str:
    return text(value, ABSTRACT_CHARS) or ""
