"""`nightlab init`: a new lab from a template, or (`--here`) nightlab added to an existing
project (registered in cli.py; the work is in init_lab.py and templates/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from nightlab.lab.cli_common import console as _console
from nightlab.lab.cli_common import fail
from nightlab.lab.cli_common import guard as _guard

Direction = Literal["maximize", "minimize"]


def _terminal() -> bool:
    return sys.stdin.isatty()


def init(
    path: Annotated[Path | None, typer.Argument(
        help="The new lab folder (absent or empty); the lab is named after it: ASCII "
        "letters, digits, - and _ kept, every other run of characters becomes -. With "
        "--here: the existing project (default: the current folder).")] = None,
    template: Annotated[str, typer.Option(help="digits | lightning-hydra | minimal")] = "minimal",
    here: Annotated[bool, typer.Option(
        "--here", help="Add nightlab.toml (and IDEA.md if missing) to an existing project: "
        "its @hydra.main / hydra-zen entry point is found and knobs are proposed from its "
        "config; no other file is touched.")] = False,
    metric: Annotated[str | None, typer.Option(
        help="With --here: the metric the script prints (asked when not given).")] = None,
    direction: Annotated[Direction | None, typer.Option(
        help="With --here: maximize | minimize the metric (asked when not given).")] = None,
    commit: Annotated[bool, typer.Option(
        "--commit", help="With --here: git-commit nightlab.toml and IDEA.md (only those).")]
    = False,
) -> None:  # fmt: skip
    """Create a lab folder from a template (a git repo with one commit: train.py, IDEA.md,
    nightlab.toml), or with --here add nightlab to an existing project."""
    if not here:
        if path is None:
            fail("name the new lab folder: nightlab init DIR (or --here in a project)")
        if metric is not None or direction is not None or commit:
            fail("--metric, --direction and --commit go with --here (a template has its own)")
        from nightlab.lab.templates import create

        created = _guard(create, path, template)
        _console().print(
            f"created lab [bold]{created}[/] ({template}); next: [bold]nightlab run {path}[/]"
        )
        return
    path = path or Path(".")
    if metric is None or direction is None:
        if not _terminal():
            fail("--here needs --metric NAME and --direction maximize|minimize "
                 "(no terminal to ask on)")  # fmt: skip
        import click

        metric = metric or click.prompt("metric the script prints (e.g. val_loss)")
        direction = direction or click.prompt(
            "direction", type=click.Choice(["maximize", "minimize"]), default="maximize"
        )
    from nightlab.lab.init_lab import init_here

    written, notes = _guard(init_here, path, metric.strip(), direction, commit)
    for note in notes:
        _console().print(f"note: {note}", markup=False, soft_wrap=True)
    done = "wrote and committed" if commit else "wrote"
    _console().print(
        f"{done} {', '.join(written)} in {path.resolve()}; check the knobs, then: "
        f"[bold]nightlab run {path}[/]", soft_wrap=True)  # fmt: skip
