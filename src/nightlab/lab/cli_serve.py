"""`nightlab dashboard` and `nightlab notify-test`: watching the night from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nightlab.lab.cli_common import HERE, LabArg, Port, console, guard
from nightlab.lab.cli_common import lab as lab_of


def dashboard(
    lab: Annotated[Path, typer.Argument(help="A lab folder, or a folder of labs.")] = HERE,
    host: Annotated[str, typer.Option(help="Any but 127.0.0.1 needs --token.")] = "127.0.0.1",
    port: Port = 8321,
    token: Annotated[str | None, typer.Option(envvar="NIGHTLAB_DASHBOARD_TOKEN", help=(
        'For the controls ("generate": made, printed once; on 127.0.0.1, the default)'))] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="No controls at all.")] = False,
) -> None:
    """Serve the live web dashboard: the night, trials and diffs, leaderboard, controls."""
    from nightlab.lab.dashboard import prepare, serve

    server, line = guard(prepare, lab, host=host, port=port, token=token, read_only=read_only)
    console().print(line, soft_wrap=True, markup=False)
    serve(server)



def notify_test(lab: LabArg = HERE) -> None:
    """Send one test message to each URL of the notify section and say whether it arrived."""
    results = guard(lab_of(lab).notify_test)
    out = console()
    for label, error in results:
        said = "delivered" if error is None else f"FAILED: {error}"
        out.print(f"{label}: {said}", soft_wrap=True, markup=False)
    failed = sum(error is not None for _, error in results)
    if failed:
        out.print(
            f"{failed} of {len(results)} URL(s) failed: check each one's address and token "
            "(the service's page: https://github.com/caronc/apprise/wiki) and that this "
            "machine can reach it",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1)
