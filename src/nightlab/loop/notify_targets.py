"""Where the night's messages go (`[notify] urls`): an Apprise URL (Target) or a
`plugin:NAME` notifier another package registered (PluginTarget), each read or made when
the night starts (`targets`); what the sending threads of loop/notify.py call."""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nightlab import UserError
from nightlab.store.redact import redact

ERROR_CHARS = 500
MASK_MIN = 6  # shorter pieces of a URL are not masked in errors (they would blank words)
LABEL_CHARS = 120  # a URL as shown and recorded (secrets masked by Apprise, then redacted)
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
