"""`nightlab stop`, `finishup`, `report`, `adopt` and `schema`: the commands around a
night's end (registered in cli.py, in the order of --help)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nightlab.lab.cli_common import HERE, ConfirmTop, FinalRounds, LabArg, Note, OldTopK, fail
from nightlab.lab.cli_common import console as _console
from nightlab.lab.cli_common import guard as _guard
from nightlab.lab.cli_common import lab as _lab


def stop(
    lab: LabArg = HERE,
    now: Annotated[bool, typer.Option(help="Kill running trials instead of waiting.")] = False,
    wait: Annotated[bool, typer.Option(help="Return once the loop has stopped.")] = False,
) -> None:
    """Stop the loop gracefully: no new trials, running ones finish (or --now: killed)."""
    final = _guard(_lab(lab).stop, now=now, wait=wait)
    if job := final.get("cancelled_job"):
        _console().print(f"cancelled the loop job {job}; state: {final['state']}")
        _left_running(final)
        return
    if job := final.get("resuming_job"):
        _console().print(f"stop requested: the loop job {job}, resuming now, stops after its "
                         "running trials")  # fmt: skip
        return
    if final.get("ended_requeued"):
        _console().print(f"the night's loop job had left Slurm's queue; state: {final['state']}")
        _left_running(final)
        return
    if final.get("not_running"):  # nothing to do is not an error: exit 0
        if "cancelled_trial_jobs" in final:
            _left_running(final)
            return
        said = f"{final['lab']} is not running (state: {final['state']}); nothing to stop"
        _console().print(said, soft_wrap=True, markup=False)
        return
    _console().print(f"stop requested; state: {final['state']}")


def _left_running(st: dict[str, Any]) -> None:
    """The trial jobs a loop job left behind: cancelled (`--now`), or still running."""
    if (cancelled := st.get("cancelled_trial_jobs")) is not None:
        jobs = ", ".join(cancelled) or "none were still queued or running"
        _console().print(f"cancelled the trial jobs the loop left ({jobs}): the next "
                         "`nightlab run` records them", soft_wrap=True, markup=False)  # fmt: skip
    elif running := st["trials"]["running"]:
        _console().print(f"{running} trial job(s) the loop left run on: "
                         "`nightlab run` records them, `nightlab stop --now` cancels them",
                         soft_wrap=True, markup=False)  # fmt: skip


def finishup(
    lab: LabArg = HERE,
    minutes_left: Annotated[
        float | None, typer.Option(min=0.0, help="Its length; alone: it begins now.")
    ] = None,
    run_hours: Annotated[
        float | None, typer.Option(min=0.0, help="The last --minutes-left of an H-hour night.")
    ] = None,
    at: Annotated[str | None, typer.Option(
        help="It begins at this time (ISO 8601; local time unless it says e.g. Z or +01:00).",
    )] = None,
    in_minutes: Annotated[float | None, typer.Option(min=0.0, help="It begins in N min.")] = None,
    final_rounds: FinalRounds = None,
    confirm_top: ConfirmTop = None,
    top_k: OldTopK = None,
    note: Note = "",
    report_now: Annotated[
        bool, typer.Option(help="No final training: write the report now.")
    ] = False,
    show: Annotated[bool, typer.Option(help="Show the request and its times.")] = False,
    cancel: Annotated[bool, typer.Option(help="Cancel the request.")] = False,
) -> None:  # fmt: skip
    """Request or schedule the finish-up: confirmation runs for the top candidates, the
    held-out test metric for the final pick, then the report."""
    target = _lab(lab)
    if show or cancel:
        shown = _guard(target.finish_up_cancel if cancel else target.finish_up_show)
    else:
        shown = _guard(
            target.finish_up, minutes_left=minutes_left, run_hours=run_hours, at=at,
            in_minutes=in_minutes, final_rounds=final_rounds, top_k=top_k or confirm_top,
            note=note, report_now=report_now,
        )  # fmt: skip
    console = _console()
    console.print(shown["summary"], soft_wrap=True)
    if shown.get("report"):
        console.print(f"report: {shown['report']}/final_paper_report.md", soft_wrap=True)
    elif shown.get("active") and target.status()["state"] != "running":
        console.print(f"it takes effect when the night runs: nightlab run {lab}")


def report(
    lab: LabArg = HERE,
    top: Annotated[int | None, typer.Option(
        min=1, help="Candidates in the report's leaderboard (default: [report] top_k).")] = None,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, hidden=True, help="Old spelling of --top.")] = None,
) -> None:  # fmt: skip
    """Write the morning report: story, paper-style report, leaderboard, plots, HTML."""
    folder = _guard(_lab(lab).report, top_k=top or top_k)
    console = _console()
    console.print(f"report written to {folder}", soft_wrap=True)
    for name in sorted(p.name for p in folder.iterdir()):
        console.print(f"  {name}")


def adopt(
    words: Annotated[list[str], typer.Argument(
        metavar="[LAB] TRIAL", show_default=False,
        help="The lab folder (default: here), then the trial id (see `nightlab leaderboard`).",
    )],
) -> None:  # fmt: skip
    """Bring a trial's code and parameters onto your branch as one commit."""
    lab, trial = split_adopt(words)
    done = _guard(_lab(lab).adopt, trial)
    files = ", ".join(done["files"]) or "no code"
    params = ", ".join(f"{k}={v}" for k, v in done["params"].items()) or "no parameters"
    console = _console()
    console.print(
        f"adopted trial {trial} onto {done['branch']} ({done['commit'][:10]}): {files}; {params}",
        soft_wrap=True, markup=False,
    )  # fmt: skip
    for name, where in done["carried"].items():
        console.print(f"  {name}: the project's default rewritten at {where}", markup=False)
    for name, why in done["not_carried"].items():
        console.print(f"  {name}: NOT carried into the project's code: {why}", markup=False)


def split_adopt(words: list[str]) -> tuple[Path, int]:
    """(LAB, TRIAL) from `adopt [LAB] TRIAL`; the old order `adopt TRIAL LAB` still works,
    with a notice on stderr."""
    if len(words) == 1 and words[0].isdigit():
        return HERE, int(words[0])
    if len(words) == 2 and words[1].isdigit():
        return Path(words[0]), int(words[1])
    if len(words) == 2 and words[0].isdigit():
        _console(stderr=True).print(
            f"notice: write `nightlab adopt {words[1]} {words[0]}` (the lab first, like the "
            "other commands); the old order still works for now",
            soft_wrap=True, markup=False,
        )  # fmt: skip
        return Path(words[1]), int(words[0])
    fail(f"usage: nightlab adopt [LAB] TRIAL (a trial id is a number), not {' '.join(words)!r}")
    raise AssertionError  # fail() exits


def schema() -> None:
    """Print the JSON Schema of nightlab.toml (for taplo / Even Better TOML completion)."""
    from nightlab.lab.schema import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
