"""Hostile servers against the three sources (their real client libraries): an endless
body, a slow drip, a gzip bomb, a redirect off the configured host, hostile fields. Each
must end in a LiteratureError (or clean papers) in bounded time and memory."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nightlab.agents.literature import LiteratureError, net
from nightlab.agents.literature.arxiv_source import ArxivSource
from nightlab.agents.literature.openalex_source import OpenAlexSource
from nightlab.agents.literature.s2_source import SemanticScholarSource
from nightlab.config import LiteratureSection

from .servers import FIXTURES

Behave = Callable[[BaseHTTPRequestHandler], None]


class Hostile:
    """A server on 127.0.0.1 that answers every GET with `behave(handler)`; counts hits."""

    def __init__(self, behave: Behave) -> None:
        self.behave, self.hits = behave, []
        self.stop = threading.Event()

    def __enter__(self) -> Hostile:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer.hits.append(self.path)
                try:
                    outer.behave(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def head(h: BaseHTTPRequestHandler, status: int = 200, **headers: str) -> None:
    h.send_response(status)
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.end_headers()


def make(kind: str, url: str):
    section = LiteratureSection(arxiv_url=url, openalex_url=url, semanticscholar_url=url)
    if kind == "arxiv":
        return ArxivSource(section, timeout=2.0, retries=0, delay=0.0)
    if kind == "openalex":
        return OpenAlexSource(section, timeout=2.0, retries=0)
    return SemanticScholarSource(section, timeout=2.0, retries=0)


KINDS = ["arxiv", "openalex", "semanticscholar"]


def fails_in(source, seconds: float, what: str = "search") -> str:
    started = time.monotonic()
    with pytest.raises(LiteratureError) as caught:
        source.search("deep learning", 5) if what == "search" else source.get("doi:10.1/x")
    assert time.monotonic() - started < seconds
    return str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_an_endless_chunked_body_is_cut_at_the_cap(kind, monkeypatch):
    monkeypatch.setattr(net, "MAX_BODY", 256 * 1024)

    def endless(h):
        head(h, Transfer_Encoding="chunked", Content_Type="application/json")
        chunk = b"x" * 65536
        while not server.stop.is_set():
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with Hostile(endless) as server:
        assert "MiB" in fails_in(make(kind, server.url), 10)


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_drip_that_never_trips_a_read_timeout_is_given_up(kind, monkeypatch):
    monkeypatch.setattr(net, "DEADLINE", 3.0)

    def drip(h):
        head(h, Content_Length="100000", Content_Type="application/json")
        while not server.stop.is_set():
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.2)  # well inside the 2 s read timeout

    with Hostile(drip) as server:
        assert "in time" in fails_in(make(kind, server.url), 8)


@pytest.mark.parametrize("kind", KINDS)
def test_a_gzip_bomb_is_cut_at_the_cap(kind, monkeypatch):
    monkeypatch.setattr(net, "MAX_BODY", 1024 * 1024)
    bomb = gzip.compress(b"\0" * (300 * 1024 * 1024), compresslevel=9)  # 300 MiB inflated

    def gz(h):
        head(h, Content_Encoding="gzip", Content_Length=str(len(bomb)),
             Content_Type="application/json")  # fmt: skip
        h.wfile.write(bomb)

    with Hostile(gz) as server:
        assert "MiB" in fails_in(make(kind, server.url), 20)


@pytest.mark.parametrize("kind", KINDS)
def test_a_redirect_off_the_configured_host_is_not_followed(kind):
    with Hostile(lambda h: head(h, 404, Content_Length="0")) as elsewhere:

        def moved(h):
            head(h, 302, Location=elsewhere.url.replace("127.0.0.1", "localhost") + h.path,
                 Content_Length="0")  # fmt: skip

        with Hostile(moved) as server:
            fails_in(make(kind, server.url), 10)
            assert server.hits and elsewhere.hits == []


def test_a_redirect_on_the_same_host_is_followed():
    work = (FIXTURES / "openalex_work.json").read_bytes()

    def answer(h):
        if "W1" in h.path:
            head(h, 301, Location=h.path.replace("W1", "W2741809807"), Content_Length="0")
        else:
            head(h, Content_Length=str(len(work)), Content_Type="application/json")
            h.wfile.write(work)

    with Hostile(answer) as server:
        paper = make("openalex", server.url).get("openalex:W1")
        assert paper is not None and paper.openalex == "W2741809807"


HOSTILE_URLS = [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://x.example/a) [evil](javascript:alert(1)",
    "https://x.example/<b>",
]


@pytest.mark.parametrize("bad", HOSTILE_URLS)
def test_a_paper_url_is_http_and_safe_to_put_in_markdown(bad):
    record = json.loads((FIXTURES / "s2_paper.json").read_bytes())
    record.update(url=bad, externalIds={"DOI": "10.1234/a)[x](javascript:alert(1)"})
    body = json.dumps(record).encode()

    def answer(h):
        head(h, Content_Length=str(len(body)), Content_Type="application/json")
        h.wfile.write(body)

    with Hostile(answer) as server:
        paper = make("semanticscholar", server.url).get("s2:" + record["paperId"])
    assert paper is not None and paper.url is not None
    assert paper.url.startswith("https://")
    assert not any(ch in paper.url for ch in " ()[]<>\"'`")
