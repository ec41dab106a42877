"""Keep secrets out of everything nightlab writes: the values of secret-looking environment
variables (see SECRET_NAME: `*_API_KEY`, `*_TOKEN`, `*_SECRET*`, `*PASSWORD`, `*_PWD`,
`*_KEY`, `*_CREDENTIALS`, `*_DSN`, `DATABASE_URL`, `GITHUB_PAT`, ...), the variable named by
`[agents] api_key_env`, and strings shaped like common API keys are replaced by a marker in
events, prompts, tool answers, log tails, loop output, MLflow tags and artifacts, and reports;
and trials get an environment without those variables unless `[trial] pass_env` lists them.

Which copies of a secret value are caught, for values of 8 characters or more: the value
itself in any letter case (upper, lower, mixed) and reversed; its hex (either case); its
base64, standard and URL-safe, alone or inside a longer base64 string at any of the 3 byte
alignments (up to 2 characters at each end, which mix in neighbouring bytes, stay); and any
of these split across lines or spaced out (pieces separated only by whitespace, e.g. a few
characters printed per line). Values of 6 or 7 characters are caught only verbatim; shorter
ones not at all (they would blank ordinary words).
Not caught: pieces with other text between them (a prefix on each line, a comma-separated
list of characters), compositions (base64 of the reversed value), other encodings (URL or
JSON escapes, rot13, compression, encryption), and partial values; nor a split secret whose
first pieces lie before the start of a shown tail.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SECRET_NAME = re.compile(
    r"""(?:^|_)(?:API_?)?KEY$ | APIKEY$ | (?:^|_)ACCESS_KEY_ID$       # *_KEY, API_KEY
    | TOKEN$ | (?:^|_)PAT$ | (?:^|_)AUTH$                             # HF_TOKEN, GITHUB_PAT
    | (?:^|_)SECRETS?(?:$|_)                                          # *_SECRET, *_SECRET_*
    | PASSWORD$ | PASSWD$ | PASSPHRASE$ | (?:^|_)PASS$ | _PWD$        # PGPASSWORD, MYSQL_PWD
    | (?:^|_)CREDENTIALS?$ | (?:^|_)CREDS$
    | (?:^|_)DSN$ | CONN(?:ECTION)?_?STR(?:ING)?$                     # SENTRY_DSN
    | (?:^|_)(?:DATABASE|DB|REDIS|MONGO(?:DB)?|POSTGRES(?:QL)?|PG|MYSQL|AMQP|BROKER)_UR[LI]$
    """,
    re.IGNORECASE | re.VERBOSE,
)
MIN_SECRET_LEN = 6  # shorter values ("1", "true") would blank ordinary words
MIN_TRANSFORM_LEN = 8  # reversed, cased, encoded or split copies only from this length
KEY_SHAPES = re.compile(
    r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{22,}|hf_[A-Za-z0-9]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z))"
)
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+(?=@)", re.IGNORECASE)

_names: set[str] = set()  # variables that hold secrets whatever their name (api_key_env)


def add_secret_names(*names: str | None) -> None:
    """Treat these variables as secrets in this process from now on (for example the one
    that `[agents] api_key_env` names)."""
    _names.update(n for n in names if n)


def config_secret_names(cfg: Any) -> tuple[str, ...]:
    """The variables a config names as holding secrets, whatever they are called."""
    agents = getattr(cfg, "agents", None)
    name = getattr(agents, "api_key_env", None)
    return (name,) if name else ()


def secret_values(
    env: Mapping[str, str] | None = None, also: Iterable[str] | None = None
) -> dict[str, str]:
    """Secret value → the name of the variable holding it, longest value first. `also`:
    more variables to treat as secrets (default: those given to add_secret_names)."""
    env = os.environ if env is None else env
    extra = set(_names if also is None else also)
    found: dict[str, str] = {}
    for name, raw in env.items():
        value = raw.strip()
        if len(value) >= MIN_SECRET_LEN and (name in extra or SECRET_NAME.search(name)):
            found.setdefault(value, name)
    return dict(sorted(found.items(), key=lambda kv: (-len(kv[0]), kv[0])))


def redact(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value (and the copies the module docstring lists) replaced
    by `[redacted NAME]`, and key-shaped strings by `[redacted key]`."""
    secrets = secret_values() if secrets is None else secrets
    if secrets:
        squeezed = _SPACE.sub("", text)  # a cheap test first: which secrets can be there
        folded = squeezed.lower()
        for finder in _finders(tuple(secrets.items())):
            if finder.maybe_in(squeezed, folded):
                text = finder.pattern.sub(finder.marker, text)
    text = KEY_SHAPES.sub("[redacted key]", text)
    return URL_PASSWORD.sub(r"\1[redacted password]", text)


def redact_data(data: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """A copy of JSON-like `data` with every string (keys included) redacted."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, dict):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v, secrets) for v in data]
    return data


def redact_bytes(data: bytes, secrets: Mapping[str, str] | None = None) -> bytes:
    """`data` (a log, any encoding) redacted; bytes that are not UTF-8 pass unchanged."""
    text = data.decode("utf-8", errors="surrogateescape")
    return redact(text, secrets).encode("utf-8", errors="surrogateescape")


_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class _Finder:
    """One secret's copies: a pattern, and the plain strings that one of its matches leaves
    once whitespace is removed (lower-cased for `folded`), for a fast first test."""

    pattern: re.Pattern[str]
    marker: str
    folded: tuple[str, ...]
    exact: tuple[str, ...]
    always: bool  # non-ASCII: case folding may differ from str.lower, no first test

    def maybe_in(self, squeezed: str, folded: str) -> bool:
        return (
            self.always
            or any(n in folded for n in self.folded)
            or any(n in squeezed for n in self.exact)
        )


@functools.lru_cache(maxsize=64)
def _finders(items: tuple[tuple[str, str], ...]) -> tuple[_Finder, ...]:
    """The finders of a set of secrets, longest value first (built once per set)."""
    return tuple(
        _finder(value, name) for value, name in sorted(items, key=lambda kv: (-len(kv[0]), kv[0]))
    )


def _finder(value: str, name: str) -> _Finder:
    marker = f"[redacted {name}]".replace("\\", "\\\\")
    plain = "".join(value.split())
    if len(value) < MIN_TRANSFORM_LEN:
        return _Finder(re.compile(re.escape(value)), marker, (), (plain,), False)
    raw = value.encode()
    folded = {plain.lower(), plain[::-1].lower(), raw.hex()}
    exact = set()
    for skip in range(3):  # base64 of the value at each alignment inside a longer string
        encoded = base64.b64encode(b"\0" * skip + raw).decode()
        core = encoded[-(-8 * skip // 6) : 8 * (skip + len(raw)) // 6]
        exact |= {core, core.translate(str.maketrans("+/", "-_"))}
    by_len = functools.partial(sorted, key=lambda v: (-len(v), v))
    alternatives = [f"(?i:{_spread(v)})" for v in by_len(folded)]
    alternatives += [_spread(v) for v in by_len(exact)]
    pattern = re.compile("|".join(alternatives))
    return _Finder(pattern, marker, tuple(folded), tuple(exact), not value.isascii())


def _spread(value: str) -> str:
    """`value` with any whitespace (line breaks included) allowed between its characters."""
    return r"\s*".join(re.escape(c) for c in value if not c.isspace())


def is_secret_name(name: str) -> bool:
    return bool(name in _names or SECRET_NAME.search(name))


def trial_env(cfg: Any) -> dict[str, str]:
    """This process's environment as trials (and what runs their code) may see it: secrets
    and the agents' key (`[agents] api_key_env`) removed unless `[trial] pass_env` keeps
    them. (The agents' key is also redacted in this process from now on.)"""
    also = config_secret_names(cfg)
    add_secret_names(*also)
    return scrub_env(os.environ, cfg.trial.pass_env, also)


def scrub_env(
    env: Mapping[str, str], keep: list[str] | tuple[str, ...] = (), also: tuple[str, ...] = ()
) -> dict[str, str]:
    """`env` without secret-looking variables (and the names in `also`), except `keep`."""
    drop = set(also) - set(keep)
    return {
        k: v for k, v in env.items() if k in keep or (k not in drop and not SECRET_NAME.search(k))
    }
