"""Who may read and who may act: the dashboard's token, Host and Origin rules (no web
framework here: plain functions over header values, tested on their own).

- Bound to a loopback address, reads need no token; bound to any other, every page does.
- Every control needs the token: `Authorization: Bearer T`, the login cookie, or the
  confirm form's token field; compared in constant time.
- Every request's Host must name this machine (a loopback name, an IP literal, the bound
  host or this machine's name): a page of another site rebinding its DNS name to 127.0.0.1
  is refused. A control's Origin (else Referer) must be this very Host; without either, only
  an `Authorization` header (not a browser's cookie) may act.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from functools import cache
from urllib.parse import urlsplit

from nightlab.lab.errors import LabError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
COOKIE = "nightlab_dashboard"
TOKEN_ENV = "NIGHTLAB_DASHBOARD_TOKEN"


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def resolve_token(host: str, token: str | None) -> tuple[str, bool]:
    """The token to serve with and whether it was made here (to be printed once). A host
    beyond this machine without one is refused, naming the fix."""
    if token == "generate" or (token is None and is_loopback(host)):
        return new_token(), True
    if token is None:
        raise LabError(
            f"--host {host} serves the dashboard beyond this machine: give it a token "
            f"(--token T, or {TOKEN_ENV}=T, or --token generate to have one made and printed "
            "once), or keep the default --host 127.0.0.1 and reach it through an SSH tunnel"
        )
    if len(token) < 16:
        raise LabError("the dashboard token must be at least 16 characters long")
    return token, False


def token_ok(given: str | None, token: str) -> bool:
    """Constant-time comparison (an empty or missing token never matches)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@cache
def _own_names() -> frozenset[str]:
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:  # pragma: no cover - a resolver that fails outright
        pass
    return frozenset(names)


def _hostname(netloc: str) -> str:
    """The host part of `host[:port]` (an IPv6 literal keeps no brackets)."""
    parsed = urlsplit("//" + netloc)
    try:
        return (parsed.hostname or "").lower()
    except ValueError:
        return ""


def host_ok(host_header: str | None, bound: str) -> bool:
    """May a request with this Host header be answered (DNS rebinding refused)?"""
    if not host_header:
        return False
    name = _hostname(host_header)
    if not name:
        return False
    if name in LOOPBACK_NAMES or name == bound.strip("[]").lower() or name in _own_names():
        return True
    try:
        ipaddress.ip_address(name)  # an address literal cannot be rebound to another
        return True
    except ValueError:
        return False


def origin_ok(origin: str | None, referer: str | None, host_header: str | None,
              has_bearer: bool) -> bool:  # fmt: skip
    """May a control with these headers act (cross-site requests refused)? The Origin (else
    the Referer) must be http(s)://<the Host header>; with neither, only a request that
    carries its token in an Authorization header (never sent by another site) may."""
    source = origin if origin is not None else referer
    if source is None:
        return has_bearer
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or not host_header:
        return False
    return parts.netloc.lower() == host_header.lower()
