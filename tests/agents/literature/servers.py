"""A local stand-in for arXiv, OpenAlex and Semantic Scholar on 127.0.0.1.

`Library()` (a context manager) answers the three APIs' paths from the recorded bodies in
fixtures/ (README.md there says where each came from), whatever prefix the path carries (a
proxy's), records every request (`requests`: path, decoded query, time), and misbehaves on
request: `fail(status, times, retry_after=…)` (429/5xx), `garble(body, times)` (a malformed
answer), `hang(times)` (never answers). `dead_url()` is a port where nothing listens.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
ATOM, JSON = "application/atom+xml; charset=utf-8", "application/json"
EMPTY_FEED = (FIXTURES / "arxiv_search.xml").read_text().split("<entry>")[0].replace(
    "<opensearch:totalResults>3<", "<opensearch:totalResults>0<"
) + "</feed>\n"


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    raw_query: str
    at: float


@dataclass
class Fault:
    status: int = 200
    body: bytes | None = None
    retry_after: str | None = None
    hang: bool = False


@dataclass
class Library:
    requests: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __enter__(self) -> Library:
        self._stop = threading.Event()
        library = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                library._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ misbehaviour
    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        body = b'{"message": "Too Many Requests"}' if status == 429 else b'{"message": "boom"}'
        self.faults += [Fault(status, body, retry_after) for _ in range(times)]

    def garble(self, body: bytes, times: int = 1) -> None:
        self.faults += [Fault(200, body) for _ in range(times)]

    def hang(self, times: int = 1) -> None:
        self.faults += [Fault(hang=True) for _ in range(times)]

    # ------------------------------------------------------------------ answering
    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        self.requests.append(Seen(path, parse_qs(parts.query), parts.query, time.monotonic()))
        if self.faults:
            fault = self.faults.pop(0)
            if fault.hang:
                self._stop.wait(30)
                return
            if fault.status != 200 or fault.body is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return _send(handler, fault.status, fault.body or b"", JSON, headers)
        status, body, kind = route(path, parse_qs(parts.query))
        _send(handler, status, body, kind)


def route(path: str, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
    """What the real service answers this path with (any prefix before the API's own)."""
    if path.endswith("/query"):  # arXiv
        ids = query.get("id_list", [""])[0]
        if not ids:
            return 200, (FIXTURES / "arxiv_search.xml").read_bytes(), ATOM
        if ids == "1605.08386":
            return 200, (FIXTURES / "arxiv_get.xml").read_bytes(), ATOM
        return 200, EMPTY_FEED.encode(), ATOM
    if path.endswith("/works"):  # OpenAlex search
        return 200, (FIXTURES / "openalex_search.json").read_bytes(), JSON
    if "/works/" in path:
        key = path.rsplit("/works/", 1)[1].lower()
        if key in ("w2741809807", "doi:10.7717/peerj.4375"):
            return 200, (FIXTURES / "openalex_work.json").read_bytes(), JSON
        return 404, b'{"error": "Not Found", "message": "not found"}', JSON
    if path.endswith("/graph/v1/paper/search"):  # Semantic Scholar
        return 200, (FIXTURES / "s2_search.json").read_bytes(), JSON
    if "/graph/v1/paper/" in path:
        key = path.rsplit("/graph/v1/paper/", 1)[1].lower()
        if key in ("2d5673caa9e6af3a7b82a43f19ee920992db07ad", "doi:10.1093/mind/lix.236.433"):
            return 200, (FIXTURES / "s2_paper.json").read_bytes(), JSON
        return 404, b'{"error": "Paper with id ' + key.encode()[:80] + b' not found"}', JSON
    return 404, b'{"error": "no such path"}', JSON


def _send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str,
    headers: dict[str, str] | None = None,
) -> None:  # fmt: skip
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass


def scripted_lab(lab: Path, url: str, extra: str = "") -> Path:
    """`lab` (conftest's tiny lab) with a model worker the test scripts (`function:scripted`,
    its model patched in) and `[literature]` on the stand-in at `url`; `extra` ends that
    section."""
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace('worker = "search"', 'worker = "function:scripted"')
        + f'\n[literature]\narxiv_url = "{url}/api"\nopenalex_url = "{url}/openalex"\n{extra}'
    )
    return lab


def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
