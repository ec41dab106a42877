"""Sending notifications: one thread per `[notify] urls` entry, each with its own queue, so
the loop only ever enqueues — a slow or dead receiver never blocks or crashes the night.

- Every URL is read by Apprise when the night starts (`targets`); one it cannot read stops
  the night before anything runs, naming the entry (its secrets masked) and the fix.
- A message is redacted (store/redact.py) before it is queued; each delivery, or failure,
  is recorded as a `notify_sent` / `notify_failed` event (the event kind, the service, the
  masked URL, Apprise's error).
- Rate limit (`min_interval_s`, per URL): a message due sooner than that after the last one
  is held; when the interval has passed, everything held goes out as ONE message (the
  newest's title, "+N more", and one line per held message). `crashed`, `finished` and
  `baseline_failed` (URGENT) are never held: they go out at once, carrying whatever was
  held with them.
- `close(wait_s)`: what is still queued goes out as one message, waited for at most
  `wait_s` seconds (FLUSH_S) in all; a message not out by then is recorded as
  `notify_failed` ("not sent before the night ended") and the thread records nothing more.

Where messages go is loop/notify_targets.py: an Apprise URL (Apprise is imported only when
a night with `[notify] urls` starts, or by `nightlab notify-test`; its own timeouts, `cto`
and `rto` on the URL, 4 s each by default, bound every HTTP attempt), or a `plugin:NAME`
notifier another package registered, queued, rate-limited and recorded the same.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nightlab.loop.notify_targets import (  # noqa: F401 (the notifier's names, as before)
    ERROR_CHARS,
    LABEL_CHARS,
    Message,
    NotifyError,
    PluginTarget,
    Target,
    _short,
    targets,
)
from nightlab.store.redact import redact

LOG = logging.getLogger(__name__)
FLUSH_S = 5.0  # at the night's end, the longest wait for messages still going out
URGENT = frozenset({"crashed", "finished", "baseline_failed"})  # never held by the rate limit
QUEUE_MAX = 200  # messages waiting for one URL; past it new ones are dropped (and recorded)
Record = Callable[[str, dict[str, Any]], None]  # (event kind, data) into the store


class Channel:
    """One URL: its queue and the thread that sends from it."""

    def __init__(
        self, target: Target | PluginTarget, min_interval_s: float, record: Record
    ) -> None:
        self.target, self.min_interval, self.record = target, min_interval_s, record
        self.queue: queue.Queue[Message | None] = queue.Queue()  # bounded by `pending`
        self.lock = threading.Lock()
        self.pending: list[Message] = []  # queued or being sent: what close() may abandon
        self.closed = False
        self.thread = threading.Thread(
            target=self._run, daemon=True, name=f"nightlab-notify-{target.index}"
        )

    def put(self, message: Message) -> None:
        with self.lock:
            if self.closed:
                return
            dropped = len(self.pending) >= QUEUE_MAX  # queued, held or being sent
            if not dropped:
                self.pending.append(message)
                self.queue.put_nowait(message)
        if dropped:
            self._record(message, [], f"not sent: {QUEUE_MAX} messages already wait for it")

    def _run(self) -> None:
        held: list[Message] = []
        last, closing = float("-inf"), False
        while True:
            wait = None if not held else max(0.0, last + self.min_interval - time.monotonic())
            items: list[Message | None] = []
            try:
                items.append(self.queue.get(timeout=wait))
                while True:  # and everything queued meanwhile
                    items.append(self.queue.get_nowait())
            except queue.Empty:
                pass
            closing = closing or None in items
            held += [m for m in items if m is not None]
            if held and (
                closing
                or any(m.kind in URGENT for m in held)
                or time.monotonic() >= last + self.min_interval
            ):
                if self.min_interval or closing:
                    self._deliver(held)
                else:
                    for message in held:
                        self._deliver([message])
                held, last = [], time.monotonic()
            if closing:
                return

    def _deliver(self, batch: list[Message]) -> None:
        """Send what was held as one message: the most pressing one, with the rest listed."""
        main = next((m for m in reversed(batch) if m.kind in URGENT), batch[-1])
        others = [m for m in batch if m is not main]
        message = main
        if others:
            lines = "\n".join(f"- {time.strftime('%H:%M', time.localtime(m.at))} {m.title}"
                              for m in others)  # fmt: skip
            message = Message(
                main.kind,
                f"{main.title} (+{len(others)} more)",
                f"{main.body}\n\nAlso since the last message:\n{lines}",
                main.at,
            )
        error = self.target.send(message)
        with self.lock:
            if self.closed:  # close() gave up on it and recorded it already
                return
            for m in batch:
                if m in self.pending:
                    self.pending.remove(m)
        self._record(main, [m.kind for m in others], error)

    def _record(self, main: Message, coalesced: list[str], error: str | None) -> None:
        data: dict[str, Any] = {"event": main.kind, "service": self.target.service,
                                "url": self.target.label}  # fmt: skip
        if coalesced:
            data["coalesced"] = coalesced
        if error is not None:
            data["error"] = error
        try:
            self.record("notify_failed" if error is not None else "notify_sent", data)
        except Exception as exc:  # the store may be what failed; the night goes on
            LOG.warning("could not record a notification: %s", exc)

    def stop(self) -> None:
        """Ask the thread to send what is left, as one message, and end (never blocks)."""
        self.queue.put_nowait(None)

    def abandon(self) -> list[Message]:
        """From now on nothing more is recorded; returns the messages not delivered."""
        with self.lock:
            self.closed = True
            left, self.pending = self.pending, []
        return left


class Notifier:
    """The night's notifications: `send` enqueues (never blocks), `close` flushes (bounded)."""

    def __init__(self, targets: list[Target], events: Sequence[str], min_interval_s: float,
                 record: Record) -> None:  # fmt: skip
        self.events = frozenset(events)
        self.channels = [Channel(t, min_interval_s, record) for t in targets]
        self.record = record
        for channel in self.channels:
            channel.thread.start()

    def wants(self, kind: str) -> bool:
        return bool(self.channels) and kind in self.events

    def send(self, kind: str, title: str, body: str) -> None:
        """Queue one message for every URL (if `kind` is among `[notify] events`)."""
        if not self.wants(kind):
            return
        message = Message(kind, defuse(redact(title)), defuse(redact(body)))
        for channel in self.channels:
            channel.put(message)

    def close(self, wait_s: float = FLUSH_S) -> None:
        """Send what is queued, waiting at most `wait_s` seconds in all for every URL; what
        did not go out by then is recorded as `notify_failed`."""
        deadline = time.monotonic() + wait_s
        for channel in self.channels:
            channel.stop()
        for channel in self.channels:
            channel.thread.join(max(0.0, deadline - time.monotonic()))
        for channel in self.channels:
            for message in channel.abandon():
                channel._record(message, [], f"not sent before the night ended (waited "
                                f"{wait_s:g} s): the receiver is slow or unreachable")


# a mention (@everyone, @here, @channel, @room, <@123>, <!channel>) or a masked link
# ([text](url)) in text an agent wrote must not ping a channel or disguise a link
_MENTION = re.compile(r"(?<![\w.+-])@(?=[\w&!])|<(?=[@!#])|\](?=\()")


def defuse(text: str) -> str:
    """`text` with a zero-width space after each mention's @ (or <), and between a masked
    link's ] and (: it reads the same, but no service turns it into a ping or a link."""
    return _MENTION.sub(lambda m: m.group() + "\u200b", text)


def test(urls: Sequence[str], lab: str, where: object) -> list[tuple[str, str | None]]:
    """One test message to every URL, now (`nightlab notify-test`): per URL, its masked
    label and None (delivered) or why it failed. Nothing is recorded in the store."""
    if not urls:
        raise NotifyError(
            f"no [notify] urls in {Path(str(where)) / 'nightlab.toml'}: add the section, e.g. "
            '[notify] urls = ["ntfy://ntfy.sh/YOUR-TOPIC"] (any Apprise URL), then run '
            "notify-test again"
        )
    message = Message(
        "test",
        f"{lab}: a test message",
        f"A test from nightlab (lab {lab} at {where}): this URL receives the night's "
        "notifications.",
    )
    return [(t.label, t.send(message)) for t in targets(urls)]
