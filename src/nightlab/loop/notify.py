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

Apprise is imported here only (when a night with `[notify] urls` starts, or by
`nightlab notify-test`); its own timeouts (`cto`, `rto` on the URL: 4 s each by default)
bound every HTTP attempt. A `plugin:NAME` entry is a notifier another package registered
(`nightlab.notifiers` entry points: PluginTarget), queued, rate-limited and recorded the same.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.store.redact import redact

LOG = logging.getLogger(__name__)
FLUSH_S = 5.0  # at the night's end, the longest wait for messages still going out
URGENT = frozenset({"crashed", "finished", "baseline_failed"})  # never held by the rate limit
QUEUE_MAX = 200  # messages waiting for one URL; past it new ones are dropped (and recorded)
ERROR_CHARS = 500
MASK_MIN = 6  # shorter pieces of a URL are not masked in errors (they would blank words)
LABEL_CHARS = 120  # a URL as shown and recorded (secrets masked by Apprise, then redacted)
Record = Callable[[str, dict[str, Any]], None]  # (event kind, data) into the store
PLUGINS = "nightlab.notifiers"  # the entry-point group of `plugin:NAME` entries


class NotifyError(UserError):
    """A `[notify]` URL Apprise cannot read, or no URL at all; the message names the fix."""


@dataclass(frozen=True)
class Message:
    kind: str  # one of config.NOTIFY_EVENTS, or "test"
    title: str
    body: str
    at: float = field(default_factory=time.time)


@dataclass
class Target:
    """One `[notify] urls` entry as Apprise read it: `label` is safe to show and record."""

    index: int
    label: str
    service: str
    apprise: Any  # an apprise.Apprise holding this one URL
    secrets: tuple[str, ...] = ()  # pieces of the URL masked in any error shown or recorded

    def send(self, message: Message) -> str | None:
        """Deliver now (blocking, bounded by Apprise's timeouts); None, or why it failed."""
        import apprise

        kind = {"crashed": "FAILURE", "baseline_failed": "FAILURE", "kept": "SUCCESS",
                "finished": "SUCCESS", "stalled": "WARNING", "budget": "WARNING"}  # fmt: skip
        with _capture() as said:
            try:
                ok = self.apprise.notify(
                    title=message.title,
                    body=message.body,
                    notify_type=getattr(apprise.NotifyType, kind.get(message.kind, "INFO")),
                )
            except Exception as exc:  # a plugin's own bug must not end the sending thread
                return _short(f"{type(exc).__name__}: {exc}", mask=self.secrets)
        if ok:
            return None
        return _short("; ".join(said) or "Apprise reported a failure and gave no reason",
                      mask=self.secrets)  # fmt: skip


@dataclass
class PluginTarget:
    """A `plugin:NAME` entry: a notifier another package registered under
    `nightlab.notifiers`, made once per night (called with no arguments); its
    `send(kind, title, body)` delivers, and raising means it failed."""

    index: int
    label: str
    service: str
    notifier: Any
    secrets: tuple[str, ...] = ()

    def send(self, message: Message) -> str | None:
        try:
            self.notifier.send(message.kind, message.title, message.body)
        except Exception as exc:  # a plugin's bug is one failed delivery, not the thread's end
            return _short(f"{type(exc).__name__}: {exc}")
        return None


def _plugin(index: int, name: str) -> PluginTarget:
    from nightlab.config import plugin

    factory = plugin(PLUGINS, name)  # PluginError: nobody registered it, or it is broken
    try:
        made = factory()
    except Exception as exc:
        raise NotifyError(
            f"[notify] urls entry {index} (plugin:{name}) could not be made: "
            + _short(f"{type(exc).__name__}: {exc}")
        ) from None
    if not callable(getattr(made, "send", None)):
        raise NotifyError(
            f"[notify] urls entry {index} (plugin:{name}): the notifier has no "
            "send(kind, title, body) method"
        )
    return PluginTarget(index, f"plugin:{name}", name, made)


def targets(urls: Sequence[str]) -> list[Target | PluginTarget]:
    """Every URL read by Apprise, every `plugin:NAME` made; NotifyError naming the first
    that cannot be (a missing or broken plugin: PluginError)."""
    found: list[Target | PluginTarget] = []
    for i, url in enumerate(urls, 1):
        if url.startswith("plugin:"):
            found.append(_plugin(i, url.removeprefix("plugin:")))
            continue
        from nightlab.config import require

        require("apprise", "notify", "[notify] urls")
        import apprise

        _quiet_apprise()
        obj = apprise.Apprise()
        if not obj.add(url) or len(obj) != 1:
            raise NotifyError(_unreadable(i, url))
        server = obj[0]
        label = _short(server.url(privacy=True).split("?", 1)[0], LABEL_CHARS)
        found.append(Target(i, label, str(server.service_name), obj, _secrets(url, label)))
    return found


def _secrets(url: str, label: str) -> tuple[str, ...]:
    """The pieces of `url` an error must not show: its user, password, path segments and
    query (webhook tokens live there: Slack's, Discord's), and the parts of its host that
    Apprise masks in `label` (a Telegram bot token); raw, decoded and encoded, longest
    first. Apprise's errors quote the URL requested ("Max retries exceeded with url: ...")."""
    from urllib.parse import quote, unquote

    rest = url.split("://", 1)[-1]
    netloc, tail = re.match(r"([^/?#]*)(.*)", rest, re.S).groups()  # type: ignore[union-attr]
    userinfo, _, hostport = netloc.rpartition("@")
    split = re.compile(r"[:@/?&=#+,;\s]+")
    pieces = split.split(userinfo) + split.split(tail)
    pieces += [p for p in split.split(hostport) if p not in label]
    found = set()
    for piece in pieces:
        for form in (piece, unquote(piece), quote(unquote(piece), safe="")):
            if len(form) >= MASK_MIN:
                found.add(form)
    return tuple(sorted(found, key=len, reverse=True))


def _unreadable(index: int, url: str) -> str:
    """Why an entry cannot be used, showing only its scheme (the rest may be a token)."""
    scheme = url.split("://", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,19}", scheme):
        return (
            f"[notify] urls entry {index}: no Apprise URL (SERVICE://..., the service a short "
            "name like ntfy, slack, mailto or json); see https://github.com/caronc/apprise/wiki"
        )
    where = f"[notify] urls entry {index} ({scheme}://…)"
    known = _schemas()
    if scheme not in known:
        import difflib

        hint = difflib.get_close_matches(scheme, known, n=1)
        return (
            f"{where}: Apprise has no service called {scheme!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + "; see https://github.com/caronc/apprise/wiki for the services and their URLs"
        )
    return (
        f"{where}: Apprise cannot read this {scheme}:// URL (a token, host or target is "
        f"missing or malformed); write it as https://github.com/caronc/apprise/wiki/"
        f"Notify_{scheme} shows, then check it with `nightlab notify-test`"
    )


def _schemas() -> list[str]:
    from apprise.manager_plugins import NotificationManager

    return sorted(NotificationManager().schemas())


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


# ------------------------------------------------------------------------ Apprise's log
_SAID: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "nightlab_apprise_said", default=None
)


class _Capture(logging.Handler):
    """Apprise says why a send failed only in its log: keep what it logged during one
    send. The send's context holds the list (Apprise runs a send in its thread pool with a
    copy of the caller's context), so two URLs sending at once never mix their lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        lines = _SAID.get()
        if lines is None:
            return
        text = record.getMessage()
        if record.levelno >= logging.WARNING or text.startswith(
            ("Socket Exception", "Response Details", "HTTP error")
        ):
            lines.append(text)


_HANDLER = _Capture()


def _quiet_apprise() -> None:
    """Apprise's log goes to our capture only (its warnings become notify_failed events,
    not lines on the terminal of the night)."""
    log = logging.getLogger("apprise")
    if _HANDLER not in log.handlers:
        log.addHandler(_HANDLER)
        log.setLevel(logging.DEBUG)
        log.propagate = False


class _capture:  # noqa: N801 (a context manager used like a function)
    def __enter__(self) -> list[str]:
        _quiet_apprise()
        lines: list[str] = []
        self.token = _SAID.set(lines)
        return lines

    def __exit__(self, *exc: object) -> None:
        _SAID.reset(self.token)


def _short(text: str, most: int = ERROR_CHARS, mask: Sequence[str] = ()) -> str:
    """One line, redacted (and each of `mask` replaced), at most `most` characters."""
    for secret in mask:
        text = text.replace(secret, "***")
    text = redact(" ".join(text.split()))
    return text if len(text) <= most else text[: most - 1] + "…"


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
