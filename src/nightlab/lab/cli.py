"""The `nightlab` command: a Typer app over `nightlab.lab.api.Lab`.

Heavy modules (SQLAlchemy, MLflow, torch, Rich tables) are imported inside the commands
that need them, so `nightlab --help` and `nightlab status --json` start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from nightlab.lab.cli_common import (
    HERE,
    LOG_LEVEL_ENV,
    ConfirmTop,
    FinalRounds,
    LabArg,
    LogLevel,
    Note,
    OldTopK,
    Port,
    log_console,
    show_logs,
)
from nightlab.lab.cli_common import console as _console
from nightlab.lab.cli_common import guard as _guard
from nightlab.lab.cli_common import lab as _lab
from nightlab.lab.cli_init import init
from nightlab.lab.cli_more import adopt, finishup, report, schema, stop
from nightlab.lab.cli_papers import papers
from nightlab.lab.cli_serve import dashboard, notify_test

app = typer.Typer(
    name="nightlab",
    help="Run machine-learning experiments unattended: trials, a ratchet, a record.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(asked: bool) -> None:
    if asked:
        from nightlab import version

        typer.echo(f"nightlab {version()}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_show_version,
        help="Print nightlab's version and exit.")] = False,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, envvar=LOG_LEVEL_ENV,
        help="Show log lines from this level up (warning: only what went wrong); a started "
        "night's loop.log too.")] = LogLevel.info,
) -> None:  # fmt: skip
    """Run machine-learning experiments unattended: trials, a ratchet, a record."""
    ctx.call_on_close(show_logs(log_level.value))
    ctx.obj = {"log_level": log_level.value}  # `start` gives it to the background loop


app.command()(init)  # cli_init.py


Hours = Annotated[
    float | None, typer.Option("--hours", "--run-hours", min=0.0, help="The night's length.")
]
FinishMinutes = Annotated[
    float | None,
    typer.Option(min=0.0, help="Make the last M minutes of the night its finish-up."),
]
Worker = Annotated[str | None, typer.Option(
    help='Who proposes trials: "search", "replay:FILE", a model, "command:NAME", plugin '
    '"NAME:ARGS" (default: [agents] worker).')]  # fmt: skip
MaxTrials = Annotated[int | None, typer.Option(
    min=1, help="Stop after N trials (default: [budget] max_trials).")]  # fmt: skip
Slots = Annotated[int | None, typer.Option(
    min=1, help="Trials run at the same time (default: [executor] slots).")]  # fmt: skip
Dashboard = Annotated[bool, typer.Option(help="Serve the live dashboard on 127.0.0.1 too.")]


def _beside_loop_job(lab: Path) -> None:
    from nightlab.lab import slurm_loop

    _guard(slurm_loop.refuse_beside_job, _lab(lab))


@app.command()
def run(
    lab: LabArg = HERE,
    worker: Worker = None,
    max_trials: MaxTrials = None,
    hours: Hours = None,
    slots: Slots = None,
    finishup_minutes: FinishMinutes = None,
    final_rounds: FinalRounds = None,
    confirm_top: ConfirmTop = None,
    top_k: OldTopK = None,
    finishup_note: Note = "",
    dashboard: Dashboard = False,
    port: Port = 8321,
) -> None:
    """Run the loop in the foreground until a stop condition (Ctrl-C stops gracefully)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = log_console()
    bar = Progress(
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("trials", total=max_trials)

    def progress(ended: int, total: int | None) -> None:
        bar.update(task, completed=ended, total=total)

    _beside_loop_job(lab)
    stop_dashboard, line = _dashboard("for_run", lab, port) if dashboard else (None, "")
    if line:
        console.print(line, soft_wrap=True, markup=False)
    with bar, _baseline_told(lab):
        final = _guard(
            _lab(lab).run,
            worker=worker,
            max_trials=max_trials,
            hours=hours,
            slots=slots,
            progress=progress,
            finishup_minutes=finishup_minutes,
            final_rounds=final_rounds,
            top_k=top_k or confirm_top,
            finishup_note=finishup_note,
        )
    if stop_dashboard is not None:
        stop_dashboard()
    if final["state"] == "requeued":  # a Slurm loop job: the night goes on after the requeue
        console.print(f"the loop leaves the night to its requeued job: {final['end_reason']}",
                      soft_wrap=True, markup=False)  # fmt: skip
        return
    _print_leaderboard(_lab(lab), 10)
    _print_summary(final, _lab(lab))
    _tell_failed_baseline(lab)


@contextmanager
def _baseline_told(lab: Path) -> Iterator[None]:
    """A night the baseline stopped: its error, then the trial's stderr and the fix."""
    try:
        yield
    except typer.Exit:
        _tell_failed_baseline(lab)
        raise


def _tell_failed_baseline(lab: Path) -> None:
    """No succeeded baseline (e.g. `--max-trials 1` and it crashed): say why, exit 3."""
    from nightlab.lab.baseline_failure import EXIT_CODE, diagnose, lines

    try:
        found = diagnose(_lab(lab))
    except Exception:  # the night's own error (already printed) is the one that matters
        return
    if found is not None:
        err = _console(stderr=True)
        for line in lines(found, lab):
            err.print(line, soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(EXIT_CODE)


@app.command()
def start(
    ctx: typer.Context,
    lab: LabArg = HERE,
    worker: Worker = None,
    max_trials: MaxTrials = None,
    hours: Hours = None,
    slots: Slots = None,
    finishup_minutes: FinishMinutes = None,
    final_rounds: FinalRounds = None,
    confirm_top: ConfirmTop = None,
    top_k: OldTopK = None,
    finishup_note: Note = "",
    dashboard: Dashboard = False,
    port: Port = 8321,
    slurm: Annotated[
        bool,
        typer.Option(
            help="Run the loop itself as a requeueable Slurm job ([executor] loop_time, "
            "loop_cpus, loop_mem): for clusters that end long processes on login nodes."
        ),
    ] = False,
) -> None:
    """Run the loop in the background; its output goes to .nightlab/loop.log."""
    target = _lab(lab)
    finish = {}
    if finishup_minutes is not None:
        finish = dict(finishup_minutes=finishup_minutes, final_rounds=final_rounds,
                      top_k=top_k or confirm_top, finishup_note=finishup_note or None)  # fmt: skip
    if slurm:
        job = _guard(target.start_slurm, worker=worker, max_trials=max_trials, hours=hours,
                     slots=slots, dashboard=dashboard, **finish)  # fmt: skip
        _console().print(
            f"submitted {target.name}'s loop as Slurm job {job} (log: "
            f"{target.paths.loop_log}); follow it with nightlab status / watch {lab}",
            soft_wrap=True, markup=False,
        )  # fmt: skip
        return
    _beside_loop_job(lab)
    env, served, line = _dashboard("for_start", port) if dashboard else ({}, {}, "")
    level = (ctx.find_root().obj or {}).get("log_level")
    env = {**env, LOG_LEVEL_ENV: level} if level else env
    pid = _guard(
        target.start, worker=worker, max_trials=max_trials, hours=hours, slots=slots,
        env=env, **finish, **served,
    )  # fmt: skip
    _console().print(
        f"started {target.name} in the background (PID {pid}); "
        f"follow it with [bold]nightlab watch {lab}[/]"
    )
    if line:
        _console().print(line, soft_wrap=True, markup=False)


app.command()(stop)  # cli_more.py


@app.command()
def extend(
    hours: Annotated[float, typer.Option(help="Hours to add to the running night's end.")],
    lab: LabArg = HERE,
) -> None:
    """Give a running night more hours (one without a limit ends H hours from now)."""
    done = _guard(_lab(lab).extend, hours)
    _console().print(done["summary"], soft_wrap=True, markup=False)


@app.command()
def status(
    lab: LabArg = HERE,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Is it alive, how far is it, what is the best so far."""
    target = _lab(lab)
    st = _guard(target.status)
    if as_json:
        sys.stdout.write(json.dumps(st) + "\n")
        return
    _print_summary(st, target)


@app.command()
def leaderboard(
    lab: LabArg = HERE,
    top: Annotated[int, typer.Option(min=1, help="Show the best N candidates.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Candidates ranked by their confirmed mean over new seeds; single runs last."""
    target = _lab(lab)
    if as_json:
        from nightlab.lab.views import metric_of

        rows = _guard(target.leaderboard, top)
        metric = metric_of(target)
        sys.stdout.write(json.dumps([{**r, "metric": metric} for r in rows]) + "\n")
        return
    _print_leaderboard(target, top)


@app.command()
def watch(
    lab: LabArg = HERE,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option(help="Print one refresh and exit.")] = False,
) -> None:
    """The night live: running trials with their latest metrics, trials N/max, time left,
    the best and the storyline; exits when the night ends (Ctrl-C leaves it running)."""
    from rich.markup import escape

    from nightlab.lab.watch import watch as show

    console = _console()
    try:
        last = _guard(show, _lab(lab), console, interval, once)
    except KeyboardInterrupt:
        return
    if last:
        console.print(f"[bold]{escape(last)}[/]", soft_wrap=True)


def _dashboard(how: str, *args: Any) -> Any:
    """`run --dashboard` (a thread of the loop's process), `start --dashboard`: see
    dashboard.for_run and for_start."""
    from nightlab.lab import dashboard

    return _guard(getattr(dashboard, how), *args)


app.command()(finishup)  # cli_more.py
app.command()(report)
app.command()(adopt)


@app.command()
def reset(
    lab: LabArg = HERE,
    drop_tracking: Annotated[
        bool, typer.Option(help="Also delete the lab's MLflow store (mlflow.db, mlartifacts/).")
    ] = False,
    keep_tracking: Annotated[
        bool, typer.Option(hidden=True, help="The default now (kept for old scripts).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Start the lab afresh: delete .nightlab/ (but its MLflow store) and nightlab's git
    refs; code untouched."""
    del keep_tracking  # a no-op: keeping is the default
    target = _lab(lab)
    if not yes and not typer.confirm(f"Delete all nightlab state of {target.path}?"):
        raise typer.Exit(1)
    removed = _guard(target.reset, drop_tracking=drop_tracking)
    _console().print(
        f"reset {target.name}: removed {len(removed)} item(s)"
        + ("" if drop_tracking else " (MLflow store kept)")
    )


app.command()(dashboard)  # defined in cli_serve.py, listed here in the order of --help
app.command()(papers)  # cli_papers.py
app.command("notify-test")(notify_test)
app.command()(schema)  # cli_more.py


def _print_summary(st: dict[str, Any], target: Any) -> None:
    from nightlab.lab.views import metric_of, summary

    _console().print(summary(st, metric_of(target)))


def _print_leaderboard(target: Any, top: int) -> None:
    from nightlab.lab.views import leaderboard_table, metric_of

    rows = _guard(target.leaderboard, top)
    console = _console()
    console.print(leaderboard_table(rows, target.name, metric_of(target)))
    mlflow_db = target.paths.mlflow_db
    if rows and mlflow_db.is_file():
        console.print(
            f"MLflow: every trial is a run in sqlite:///{mlflow_db}; to browse them: "
            f"pip install mlflow && mlflow ui --backend-store-uri sqlite:///{mlflow_db} "
            "--host 127.0.0.1, then open http://127.0.0.1:5000",
            soft_wrap=True,
        )
