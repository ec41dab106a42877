"""`final_condensed_story.md`: the night in at most 40 lines, from the storyline (trial
outcomes, kept and discarded), the mentor's verdicts and why each run stopped.

When the night holds more than fits, routine lines (discarded trials, waits) give way to
the ones that matter (kept trials, failures, mentor verdicts, stops) and the story says
how many it left out.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from nightlab.report.data import FAILED, Night
from nightlab.store import fmt

MAX_LINES = 40
LINE_CHARS = 220
_TRACE = re.compile(r"^\[[0-9a-f]{6,}\]\s*")
_JUDGED = re.compile(r"^trial \d+ (kept|not_confirmed)\b")  # a confirmation's verdict


@dataclass
class Item:
    ts: float
    priority: int  # 3: always wanted … 0: routine
    text: str


def when(ts: float | None) -> str:
    """Local time as `YYYY-MM-DD HH:MM`."""
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _clip(text: str, n: int = LINE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _items(night: Night) -> list[Item]:
    by_trace = {t["trace_id"]: t for t in night.trials if t["trace_id"]}
    decisions = {d["trace_id"]: d for d in night.decisions}
    items: list[Item] = []
    base_done = [t for t in night.trials if t["kind"] == "baseline" and t["status"] != "running"]
    for cycle in night.cycles:
        if not cycle["summary"]:
            continue
        text = _TRACE.sub("", cycle["summary"])
        ts = cycle["ended_at"] or cycle["started_at"]
        trial = by_trace.get(cycle["trace_id"])
        if trial is not None:
            if trial["kind"] == "baseline":
                continue  # one line for all repeats, below
            important = trial["verdict"] == "kept" or trial["kind"] == "test"
            routine = 0 if trial["kind"] == "confirm" else 1  # a confirmation: its verdict tells
            priority = 3 if important else 2 if trial["status"] in FAILED else routine
            if trial["dimension"] and trial["verdict"] == "kept":
                text += f" — {trial['dimension']}: {trial['hypothesis'] or 'no hypothesis'}"
        elif judged := _JUDGED.match(text):
            priority = 3 if judged.group(1) == "kept" else 2
        else:
            decision = decisions.get(cycle["trace_id"]) or {}
            rejected = decision and not decision.get("accepted", True)
            priority = 3 if cycle["action"] == "stop" else 1 if rejected else 0
        items.append(Item(ts, priority, text))
    if base_done:
        items.append(Item(max(t["ended_at"] or 0 for t in base_done), 3, _baseline_line(night)))
    for e in night.mentor:
        d = e["data"]
        question = f" Question: {d['question']}" if d.get("question") else ""
        why = f" ({d['why']})" if d.get("why") else ""
        verdict = d.get("verdict", "review")
        items.append(Item(e["ts"], 3, f"Mentor: {verdict}{why}: {d.get('critique', '')}{question}"))
    for e in night.test_notes:
        d = e["data"]
        why = d.get("reason") or d.get("status") or "no reason recorded"
        items.append(Item(e["ts"], 3, f"Held-out test figure not obtained ({e['kind']}): {why}"))
    for e in night.mentor_errors:
        items.append(Item(e["ts"], 2, f"Mentor failed: {e['data'].get('error', '')}"))
    for run in night.runs:
        items.append(Item(run["started_at"], 2, f"Run {run['id']} started ({_who(run)})."))
        if run["ended_at"] is not None:
            reason = run["end_reason"] or "no reason recorded"
            items.append(Item(run["ended_at"], 3, f"Run {run['id']} {run['state']}: {reason}."))
    return sorted(items, key=lambda i: i.ts)


def _who(run: dict[str, Any]) -> str:
    opts = run["options"] or {}
    parts = [f"worker {opts.get('worker') or '?'}"]
    if opts.get("slots"):
        parts.append(f"{opts['slots']} slot(s)")
    return ", ".join(parts)


def _baseline_line(night: Night) -> str:
    base = night.baseline
    runs = [t for t in night.trials if t["kind"] == "baseline"]
    if base is None:
        return f"Baseline: none of its {len(runs)} repeat(s) succeeded."
    sd = f" ± {fmt.value(base['sigma'])}" if base["n"] > 1 else ""
    return (
        f"Baseline: {night.metric} {fmt.value(base['objective'])}{sd} over {base['n']} seed(s) "
        f"(trials {', '.join(str(i) for i in base['trials'])})."
    )


def header(night: Night) -> list[str]:
    trials = night.trials
    run = night.last_run()
    kept = night.kept()
    lines = [f"# The night of {night.cfg.lab.name} (night {night.night_id[:12]})", ""]
    if run is not None:
        end = "still running" if run["state"] == "running" else f"{run['state']}"
        reason = f": {run['end_reason']}" if run["end_reason"] else ""
        lines.append(
            f"{when(night.runs[0]['started_at'])} → {when(run['ended_at'])}, "
            f"{len(night.runs)} run(s); {end}{reason}."
        )
    avoided, waiting = night.false_keeps_avoided(), night.screened()
    lines.append(
        f"{len(trials)} trial(s): {len(night.succeeded())} succeeded, "
        f"{len(night.failures())} failed/timed out/killed, "
        + (f"{len(night.pruned())} pruned (stopped early, never kept), " if night.pruned() else "")
        + f"{len(kept)} kept, "
        f"{len(avoided)} not confirmed (false keeps avoided)"
        + (f", {len(waiting)} awaiting confirmation" if waiting else "")
        + f"; {len(night.rejections())} gate rejection(s); {len(night.mentor)} mentor review(s)."
    )
    best = night.best
    if best is None or best["objective"] is None:
        lines.append("No objective was measured.")
    elif not kept:
        lines.append(
            f"Nothing beat the baseline: the base is still trial {best['trial']} "
            f"({night.metric} {_estimate(best)})."
        )
    else:
        lines.append(f"Best kept: trial {best['trial']}, {night.metric} = {_estimate(best)}.")
    noise = night.noise
    if noise.df:
        lines.append(
            f"Noise at the end: σ {noise.sigma:.3g} (pooled sd {noise.sd:.3g}, df {noise.df})."
        )
    return [_clip(line, 400) for line in lines]


def _estimate(best: dict[str, Any]) -> str:
    """The best's figure: `7.005 ± 0.007071 (confirmed, n=2; selection run 6.99)`."""
    if best.get("confirmed_mean") is None:
        return f"{fmt.value(best['objective'])} (a single run)"
    sd = "" if best.get("sd") is None else f" ± {fmt.value(best['sd'])}"
    if best.get("selection") is None:  # the baseline: its repeats
        return f"{fmt.value(best['confirmed_mean'])}{sd} (n={best['n']})"
    return (
        f"{fmt.value(best['confirmed_mean'])}{sd} (confirmed, n={best['n']}; selection run "
        f"{fmt.value(best['selection'])})"
    )


def render(night: Night, max_lines: int = MAX_LINES) -> str:
    """The condensed story, at most `max_lines` lines."""
    top = header(night) + ["", "## What happened", ""]
    items = _items(night)
    room = max_lines - len(top)
    chosen = items
    if len(items) > room:
        room -= 1  # for the line saying what was left out
        order = sorted(range(len(items)), key=lambda i: (-items[i].priority, i))
        keep = set(order[:room])
        chosen = [it for i, it in enumerate(items) if i in keep]
    lines = [f"- {_clip(it.text)}" for it in chosen]
    if len(chosen) < len(items):
        lines.append(
            f"- … {len(items) - len(chosen)} routine line(s) left out "
            "(the whole storyline: .nightlab/artifacts/storyline.md)"
        )
    if not items:
        lines.append("- Nothing happened yet.")
    return "\n".join(top + lines) + "\n"
