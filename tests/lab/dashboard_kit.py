"""A real `nightlab dashboard` process for the dashboard's tests, and plain HTTP to it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import NIGHTLAB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    token: str | None  # as printed (None when none was printed)
    proc: subprocess.Popen
    log: Path


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def http(
    method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of one request; redirects are not followed."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), _lower(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), _lower(err.headers)


def _lower(headers) -> dict[str, str]:  # noqa: ANN001
    return {k.lower(): v for k, v in headers.items()}


@contextmanager
def dashboard(lab: Path, *args: str, env: dict[str, str] | None = None,
              tmp: Path) -> Iterator[Served]:  # fmt: skip
    """`nightlab dashboard LAB --port P ARGS` until the block ends (then SIGTERM)."""
    port = free_port()
    log = tmp / f"dashboard-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*NIGHTLAB, "dashboard", str(lab), "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "NIGHTLAB_PLAIN": "1", **(env or {})}, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the dashboard exited: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError(f"no dashboard after 30 s: {log.read_text()}") from None
                time.sleep(0.05)
        found = re.search(r"token \(printed once[^)]*\): (\S+)", log.read_text())
        yield Served(url, found.group(1) if found else None, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
