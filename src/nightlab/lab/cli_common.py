"""What every `nightlab` command shares: the console, one-line errors, the lab, the
argument types."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nightlab import UserError

LabArg = Annotated[Path, typer.Argument(help="The lab folder (holds nightlab.toml).")]
HERE = Path(".")
Port = Annotated[int, typer.Option(min=1, max=65535, help="The dashboard's port.")]
FinalRounds = Annotated[int, typer.Option(min=0, help="Confirmation runs per candidate.")]
ConfirmTop = Annotated[int, typer.Option(
    "--confirm-top", min=1, help="How many top candidates get the confirmation runs.")]  # fmt: skip
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
