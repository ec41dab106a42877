"""The live dashboard (`nightlab dashboard`, `nightlab run/start --dashboard`): a FastAPI app
over the `Lab` API and the store's read queries. FastAPI, uvicorn and sse-starlette are
imported only here, when a dashboard is served (`nightlab --help` stays fast)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.lab.dashboard.security import TOKEN_ENV, is_loopback, resolve_token
from nightlab.lab.errors import LabError

__all__ = ["TOKEN_ENV", "address", "build", "discover", "for_run", "for_start", "in_thread",
           "prepare", "resolve_token", "serve"]  # fmt: skip

DEFAULT_PORT = 8321


def discover(path: Path) -> tuple[dict[str, Any], bool]:
    """The labs at `path` (slug → Lab): the lab itself, or each lab folder inside a folder
    of labs; and whether it was such a folder (an index page lists them)."""
    from nightlab.lab.api import Lab

    path = Path(path)
    if (path / "nightlab.toml").is_file():
        return {_slug(path.resolve().name): Lab(path)}, False
    if not path.is_dir():
        raise LabError(f"{path} is not a folder: give a lab, or a folder of labs")
    labs = {_slug(d.name): Lab(d) for d in sorted(path.iterdir())
            if d.is_dir() and (d / "nightlab.toml").is_file()}  # fmt: skip
    if not labs:
        raise LabError(f"no lab in {path}: neither it nor a folder in it holds a nightlab.toml")
    return labs, True


def _require() -> None:
    from nightlab.config import require

    for module in ("fastapi", "uvicorn", "sse_starlette"):
        require(module, "dashboard", "the dashboard")


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) or "lab"


def build(path: Path, *, token: str, host: str = "127.0.0.1", read_only: bool = False) -> Any:
    """The ASGI app serving the lab(s) at `path`."""
    _require()
    from nightlab.lab.dashboard.app import Dashboard, create_app

    labs, index = discover(path)
    return create_app(Dashboard(labs, token=token, bound=host, read_only=read_only, index=index))


def _server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off")  # fmt: skip
    return uvicorn.Server(config)


def prepare(path: Path, *, host: str, port: int, token: str | None,
            read_only: bool) -> tuple[Any, str]:  # fmt: skip
    """`nightlab dashboard`: the server (not yet serving) and the line to print: where it
    is, and the token when one was made (not on a read-only 127.0.0.1: nothing needs it)."""
    secret, made = resolve_token(host, token)
    app = build(path, token=secret, host=host, read_only=read_only)
    shown = made and not (read_only and is_loopback(host))
    return _server(app, host, port), address(host, port, secret if shown else None)


def serve(server: Any) -> None:
    """Serve in the foreground until Ctrl-C."""
    server.run()


def in_thread(path: Path, *, port: int, token: str, host: str = "127.0.0.1",
              ready_s: float = 20.0) -> Callable[[], None]:  # fmt: skip
    """Serve in a daemon thread of this process (the loop's, for `run --dashboard`; uvicorn
    leaves the signals of a process to its main thread); returns the function that stops
    it. Fails here when the port cannot be bound."""
    import time

    server = _server(build(path, token=token, host=host), host, port)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit from uvicorn when the port is taken
            failed.append(exc)

    thread = threading.Thread(target=run, name="nightlab-dashboard", daemon=True)
    thread.start()
    deadline = time.time() + ready_s
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise LabError(f"the dashboard could not listen on {host}:{port} (is the port taken?)")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)

    return stop


def address(host: str, port: int, token: str | None) -> str:
    """The line that tells where the dashboard is (and the token, when one was made)."""
    shown = f"[{host}]" if ":" in host else host
    line = f"dashboard: http://{shown}:{port}/"
    if token:
        line += f"  token (printed once; the controls ask for it): {token}"
    return line


def for_run(lab: Path, port: int) -> tuple[Callable[[], None], str]:
    """`run --dashboard`: serve on 127.0.0.1 in a thread of the loop's process; its stop
    function and the line to print. The token comes from `start` through the environment
    (taken out of it: trials and agents never see it; not printed, loop.log keeps this
    output), or is made here and printed once."""
    import os

    given = os.environ.pop(TOKEN_ENV, None)
    token, made = resolve_token("127.0.0.1", given)
    stop = in_thread(lab, port=port, token=token)
    return stop, address("127.0.0.1", port, token if made else None)


def for_start(port: int) -> tuple[dict[str, str], dict[str, Any], str]:
    """`start --dashboard`: the environment (the token: never in argv, the store or a log)
    and the `run` options for the background loop, and the line to print here."""
    import os

    _require()  # here, not in the background loop: its failure would be in loop.log only
    token, made = resolve_token("127.0.0.1", os.environ.get(TOKEN_ENV))
    line = address("127.0.0.1", port, token if made else None)
    return {TOKEN_ENV: token}, {"dashboard": True, "port": port}, line
