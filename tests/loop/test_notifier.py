"""The notifier on its own (loop/notify.py), against a real local receiver and real
sockets: sending never blocks the caller, a receiver that never answers cannot hold the close
past its bound, a flood is dropped and recorded, and every outcome is recorded once."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from nightlab.loop import notify

sys.path.insert(0, str(Path(__file__).parents[1] / "nights"))
from notify_receiver import Receiver, dead_url  # noqa: E402


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, data: dict) -> None:
        with self.lock:
            self.events.append((kind, data))

    def kinds(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(kind, data["event"]) for kind, data in self.events]


def notifier(*urls: str, interval: float = 0, record=None) -> notify.Notifier:
    events = ["started", "kept", "finished", "stalled", "budget", "crashed"]
    return notify.Notifier(notify.targets(urls), events, interval, record or Recorded())


@pytest.fixture
def blackhole():
    """A port that accepts connections (the kernel's backlog) but never reads or answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"json://127.0.0.1:{s.getsockname()[1]}/hook"


def test_sending_never_blocks_and_close_is_bounded(blackhole):
    record = Recorded()
    n = notifier(blackhole, record=record)
    t0 = time.monotonic()
    for i in range(50):
        n.send("kept", f"trial {i} kept", "body")
    enqueue = time.monotonic() - t0
    t0 = time.monotonic()
    n.close(wait_s=1.0)
    closing = time.monotonic() - t0
    assert enqueue < 0.5, f"50 sends took {enqueue:.3f}s"
    assert closing < 1.5, f"close took {closing:.2f}s against a receiver that never answers"
    failed = [d for kind, d in record.events if kind == "notify_failed"]
    assert failed and all("not sent before the night ended" in d["error"] or "timed out" in
                          d["error"] for d in failed)  # fmt: skip
    count = len(record.events)
    time.sleep(4.5)  # the send in flight times out meanwhile: nothing more is recorded
    assert len(record.events) == count


def test_a_flood_is_dropped_past_the_queue_and_recorded(blackhole):
    record = Recorded()
    n = notifier(blackhole, record=record)
    for i in range(notify.QUEUE_MAX + 30):
        n.send("stalled", f"message {i}", "x")
    dropped = [d for kind, d in record.events if "messages already wait" in d.get("error", "")]
    assert len(dropped) == 30
    n.close(wait_s=0.2)


def test_each_message_is_delivered_and_recorded_once():
    record = Recorded()
    with Receiver() as r:
        n = notifier(r.url, dead_url(), record=record)
        n.send("started", "tiny: night started", "go")
        deadline = time.monotonic() + 5
        while not r.messages() and time.monotonic() < deadline:
            time.sleep(0.01)
        n.send("finished", "tiny: night finished", "done")
        n.send("test", "tiny: not an event of [notify] events", "never sent")
        n.close()
        titles = [m["title"] for m in r.messages()]
    assert titles == ["tiny: night started", "tiny: night finished"]
    assert sorted(record.kinds()) == sorted([
        ("notify_sent", "started"), ("notify_sent", "finished"),
        ("notify_failed", "started"), ("notify_failed", "finished"),
    ])  # fmt: skip


def test_a_rate_limited_url_sends_urgent_messages_at_once_carrying_the_held_ones():
    with Receiver() as r:
        n = notifier(r.url, interval=3600)
        n.send("started", "tiny: night started", "go")
        time.sleep(0.5)
        for i in range(3):
            n.send("kept", f"tiny: trial {i} kept", "better")
        time.sleep(0.5)
        assert len(r.messages()) == 1  # the kept ones are held...
        n.send("crashed", "tiny: nightlab crashed", "the loop died")
        time.sleep(0.5)
        got = r.messages()
        n.close()
    assert len(got) == 2  # ...and the crash went out at once, with them
    assert got[1]["title"] == "tiny: nightlab crashed (+3 more)"
    assert all(f"trial {i} kept" in got[1]["message"] for i in range(3))


def test_a_receiver_answering_an_error_is_recorded_with_its_reason():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuses(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"go away " * 10_000)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    record = Recorded()
    try:
        n = notifier(f"json://127.0.0.1:{server.server_port}/x", record=record)
        n.send("kept", "tiny: trial 4 kept", "x")
        n.close()
    finally:
        server.shutdown()
        server.server_close()
    [(kind, data)] = record.events
    assert kind == "notify_failed" and "403" in data["error"]
    assert len(data["error"]) <= notify.ERROR_CHARS  # a huge answer stays short


def test_a_hostile_url_is_refused_or_shown_masked_and_short():
    with pytest.raises(notify.NotifyError, match="entry 1 .json://…."):
        notify.targets(["json://127.0.0.1:9/x\nFAKE: a forged line"])
    with pytest.raises(notify.NotifyError, match="entry 1: no Apprise URL"):
        notify.targets(["a" * 10_000 + "://x"])
    [long] = notify.targets(["json://127.0.0.1:9/" + "a" * 100_000])
    assert len(long.label) <= notify.LABEL_CHARS
    [secret] = notify.targets(["json://user:hunter2hunter2@127.0.0.1:9/x"])
    assert "hunter2" not in secret.label
