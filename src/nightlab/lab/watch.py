"""`nightlab watch`: one screen of the night, refreshed until it ends.

The panel: the state line (heartbeat, trials N / max, time left), the best so far, the
running trials (id, kind, compact params, elapsed / budget, the latest metric values they
printed, their hypothesis) and, in the lines left, the newest storyline lines (a short
terminal drops the oldest). Every text from the store or a trial is shown as plain text —
never as Rich markup, control characters replaced — and cut before it is styled, so a
hostile trial can neither break nor slow the view. A running trial's metrics come from a
bounded tail of its logs (`trials.metrics.peek`), never the whole log.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from nightlab.lab.views import STATE_STYLE, clean, estimate, metric_of
from nightlab.store import fmt, live
from nightlab.trials.metrics import peek

SHOWN_METRICS = 4  # latest values shown per running trial
MAX_STORY = 500  # storyline lines a tall terminal shows at most


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _line(text: str = "", style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def compact(params: dict[str, Any] | str, limit: int = 160) -> str:
    """Parameters as `k=v k=v`, numbers to 3 significant digits, cut at `limit`."""
    if isinstance(params, str):
        return clean(params, limit)
    parts, size = [], 0
    for k, v in params.items():
        part = f"{clean(k, 40)}={clean(fmt.value(v, 3), 40)}"
        parts.append(part)
        size += len(part) + 1
        if size > limit:
            break
    return " ".join(parts)[:limit]


def metrics_text(values: dict[str, float], objective: str | None) -> str:
    names = sorted(values, key=lambda n: n != objective)[:SHOWN_METRICS]
    return " ".join(f"{clean(n, 30)}={fmt.value(values[n], 4)}" for n in names)


class Panel:
    """The watch screen of one lab: `frame()` builds it for a console's size."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.metric = metric_of(lab)
        try:
            self.budget: float | None = float(lab._quick("trial", "budget_seconds"))
        except Exception:  # a view never fails for want of a figure
            self.budget = None

    def frame(self, console: Console) -> tuple[RenderableType, dict[str, Any]]:
        """(the screen, fitted to the console's height; the status it shows)."""
        st = self.lab.status()
        night = live.snapshot(self.lab.db)
        now = time.time()
        top: list[RenderableType] = [*self._head(st, night["progress"], now)]
        if night["running"]:
            top.append(self._running(night["running"], now))
        stamp = _line(
            time.strftime("updated %H:%M:%S")
            + (" · Ctrl-C leaves; the night keeps running" if st["state"] == "running" else ""),
            "dim",
        )
        used = len(console.render_lines(Group(*top), console.options, pad=False))
        room = min(console.height - used - 3, MAX_STORY)  # the heading, the stamp, the cursor
        story: list[RenderableType] = []
        if room > 0:
            lines = self.lab.storyline(last=room)
            if lines:
                story = [_line("storyline", "bold")] + [_line(clean(s, 400), "dim") for s in lines]
        return Group(*top, *story, stamp), st

    def _head(self, st: dict[str, Any], progress: dict[str, Any], now: float) -> list[Text]:
        t = st["trials"]
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{clean(st['lab'], 60)}: ", style="bold")
        head.append(st["state"], style=STATE_STYLE.get(st["state"], ""))
        if st["state"] == "running" and st.get("heartbeat_age_s") is not None:
            head.append(f" (heartbeat {st['heartbeat_age_s']:.0f}s ago, PID {st['pid']})")
        elif st.get("end_reason"):
            head.append(f" — {clean(st['end_reason'])}")
        most = progress["max_trials"]
        head.append(f" · trials {progress['counted']}/{most if most else '∞'}", style="bold")
        deadline = progress["deadline_at"]
        if st["state"] == "running":
            left = "no time limit" if deadline is None else f"{clock(deadline - now)} left"
            head.append(f" · {left}")
        counts = _line(
            f"cycles {st['cycles']} · trials {t['total']} (succeeded {t['succeeded']}, failed "
            f"{t['failed']}, "
            + (f"pruned {t['pruned']}, " if t.get("pruned") else "")
            + f"running {t['running']}, kept {t['kept']})"
        )
        return [head, counts, _line(self._best(st), "bold")]

    def _best(self, st: dict[str, Any]) -> str:
        best, name = st.get("best"), self.metric or "objective"
        if not best:
            return "best: none yet"
        base = st.get("baseline")
        if base and best["trial"] in base["trials"]:
            return f"best: the baseline, {clean(name)} {estimate(best)}"
        params = compact(best["params"])
        return f"best: trial {best['trial']} {clean(name)} {estimate(best)}  {params}"

    def _running(self, rows: list[dict[str, Any]], now: float) -> Table:
        table = Table(
            title=f"running ({len(rows)})", title_justify="left", title_style="bold",
            box=None, pad_edge=False, header_style="bold underline",
        )  # fmt: skip
        columns = (("trial", None), ("kind", None), ("params", 3), ("elapsed / budget", None),
                   ("latest metrics", 3), ("hypothesis", 2))  # fmt: skip
        for col, ratio in columns:
            table.add_column(col, no_wrap=True, overflow="ellipsis", ratio=ratio)
        for r in rows:
            kind = r["kind"] + (f" of {r['confirms']}" if r["confirms"] is not None else "")
            values = peek(self.lab.paths.trial(r["id"]))
            table.add_row(
                Text(str(r["id"]), style="bold"),
                Text(kind),
                Text(compact(r["params"])),
                Text(f"{clock(now - r['started_at'])} / {clock(self.budget)}"),
                Text(metrics_text(values, self.metric)),
                Text(clean(r["hypothesis"] or "", 200), style="dim"),
            )
        return table


def ending(st: dict[str, Any], metric: str | None) -> str:
    """The last line `watch` prints once the night is no longer running."""
    if st["state"] == "new":
        return f"{clean(st['lab'], 60)} has not run yet: nightlab run / nightlab start"
    t = st["trials"]
    why = f" — {clean(st['end_reason'])}" if st.get("end_reason") else ""
    best = st.get("best")
    shown = (
        f"; best: trial {best['trial']} {clean(metric or 'objective')} {estimate(best)}"
        if best
        else "; no best yet"
    )
    ended = {
        "crashed": "crashed (`nightlab run` resumes it)",
        "requeued": "was requeued with its Slurm loop job (it resumes when the job starts)"
        if goes_on(st)
        else "was left `requeued` by a Slurm loop job no longer in the queue (`nightlab "
        "start --slurm` resumes it, `nightlab stop` ends it)",
    }.get(st["state"], st["state"])
    return (
        f"the night {ended}{why}: {t['total']} trials (succeeded {t['succeeded']}, "
        f"failed {t['failed']}"
        + (f", pruned {t['pruned']}" if t.get("pruned") else "")
        + f"){shown}"
    )


def watch(lab: Any, console: Console, interval: float, once: bool) -> str | None:
    """Show the panel every `interval` seconds until the night is no longer running (with
    `once`: one frame). Returns the closing line (None when `once` left a running night)."""
    panel = Panel(lab)
    if once or not console.is_terminal:
        while True:
            view, st = panel.frame(console)
            console.print(view)
            if once or not goes_on(st):
                break
            time.sleep(interval)
    else:
        from rich.live import Live

        with Live(console=console, auto_refresh=False, screen=False) as shown:
            while True:
                view, st = panel.frame(console)
                shown.update(view, refresh=True)
                if not goes_on(st):
                    break
                time.sleep(interval)
    return None if goes_on(st) else ending(st, panel.metric)


def goes_on(st: dict[str, Any]) -> bool:
    """The night runs, or its Slurm loop job is in the queue: waiting to start it (`watch`
    right after `start --slurm`: the lab still shows its last night, or none), to resume it
    (`requeued`), or ending."""
    return st["state"] == "running" or (st.get("loop_job") or {}).get("queue") is not None
