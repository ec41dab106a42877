"""A local notification receiver: a stdlib HTTP server on 127.0.0.1 that takes Apprise's
`json://` POSTs (title, message, type) and keeps them, optionally answering slowly."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# a message's event, from its title ("tiny: trial 4 kept (+0.49 score)")
KINDS = {
    "started": r": night started",
    "baseline_failed": r": the baseline failed",
    "kept": r": trial \d+ kept",
    "stalled": r": the night stalled",
    "crashed": r": nightlab crashed",
    "budget": r": limit reached",
    "finished": r": night (finished|stopped)",
    "test": r": a test message",
}


def kind_of(title: str) -> str:
    found = [k for k, pattern in KINDS.items() if re.search(pattern, title)]
    assert len(found) == 1, f"no single event in the title {title!r}"
    return found[0]


class Receiver:
    """`with Receiver(delay=5) as r:` … `r.url`, `r.got` (the JSON bodies), `r.kinds()`."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.got, self.lock = delay, [], threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(outer.delay)
                with outer.lock:
                    outer.got.append({**json.loads(body), "path": self.path})
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.got)

    def kinds(self) -> list[str]:
        return [kind_of(m["title"]) for m in self.messages()]


def dead_url() -> str:
    """A json:// URL whose port refuses connections (it was bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"json://127.0.0.1:{port}/hook"


def notify_toml(*urls: str, min_interval_s: float = 0, events: list[str] | None = None) -> str:
    text = f"\n[notify]\nurls = {json.dumps(list(urls))}\nmin_interval_s = {min_interval_s}\n"
    return text + (f"events = {json.dumps(events)}\n" if events is not None else "")
