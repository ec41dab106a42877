"""What every `nightlab` command shares: the console, the log's handler, one-line errors,
the lab, the argument types."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from nightlab import UserError

LabArg = Annotated[Path, typer.Argument(help="The lab folder (holds nightlab.toml).")]
HERE = Path(".")
Port = Annotated[int, typer.Option(min=1, max=65535, help="The dashboard's port.")]
FinalRounds = Annotated[int | None, typer.Option(
    min=0, help="Confirmation runs per candidate (default: [budget] final_rounds, 1).",
)]  # fmt: skip
ConfirmTop = Annotated[int | None, typer.Option(
    "--confirm-top", min=1,
    help="How many top candidates get the confirmation runs (default: [budget] confirm_top, 3).",
)]  # fmt: skip
# `--top-k` was the spelling of --confirm-top (it read like the leaderboard's --top): kept, hidden
OldTopK = Annotated[int | None, typer.Option(
    "--top-k", min=1, hidden=True, help="Old spelling of --confirm-top.")]  # fmt: skip
Note = Annotated[str, typer.Option(help="A note kept with the finish-up request.")]


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    from nightlab.config import ConfigError, environment

    try:
        env = environment()
    except ConfigError as exc:  # no console to print it with: plain text, then exit 2
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    plain = env.nightlab_plain
    return Console(
        width=None if sys.stdout.isatty() else env.columns,
        stderr=stderr,
        force_terminal=False if plain else None,
        no_color=plain or None,
        highlight=False,
    )


def _literal(text: str, keep: str = "") -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode()
                   for c in text)  # fmt: skip


class _Literal(logging.Formatter):
    """Every character that is not printable (ESC, other controls, bidi overrides) as its
    escape, `\\x1b`: a trial's or an agent's text cannot drive the terminal. A line's own
    newline too (`\\n`): a rationale cannot print a second, forged `HH:MM:SS trial 9 kept`
    line; only a traceback below the line keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _literal(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return _literal(super().format(record), "\n\t")


LOG_LEVEL_ENV = "NIGHTLAB_LOG_LEVEL"  # --log-level's default; how `start` passes it on


class LogLevel(StrEnum):
    """`--log-level`: the least severe record shown."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def show_logs(level: str = "info") -> Callable[[], None]:
    """Show the `nightlab` logger's records (the night's lines) on stdout from `level` up:
    through Rich on a terminal (the time, no level or path; markup off, so text shows as
    it is), else as plain `HH:MM:SS line` lines. Returns the undo."""
    out = console()
    if out.is_terminal:
        from rich.highlighter import NullHighlighter
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=out, show_level=False, show_path=False, markup=False, keywords=[],
            highlighter=NullHighlighter(), log_time_format="%H:%M:%S", omit_repeated_times=False,
        )  # fmt: skip
        handler.setFormatter(_Literal("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_Literal("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("nightlab")
    was = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False  # shown once, even where something configured the root logger

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(was[0])
        logger.propagate = was[1]

    return undo


def log_console() -> Any:
    """The console the log's lines go to on a terminal, else a new one: a live view (the
    progress bar) must share it, or the lines are written over the bar."""
    for handler in logging.getLogger("nightlab").handlers:
        if (shared := getattr(handler, "console", None)) is not None:
            return shared
    return console()


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def lab(path: Path) -> Any:
    from nightlab.lab.api import Lab

    return Lab(path)


def guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Turn the errors a user can fix into one clear line instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        from nightlab.store.files import storage_problem

        if (problem := storage_problem(exc)) is not None:
            fail(problem, 2)
        if isinstance(exc, UserError):
            fail(str(exc), exc.exit_code)
        if isinstance(exc, FileNotFoundError):
            fail(str(exc), 2)
        raise
