"""What each notification says: one method per `[notify] events` kind, called by the loop
at the moment it happens (one line at each hook), composing the message from the night and
handing it to the notifier (loop/notify.py), which sends it from its own threads.

Each message says what happened and what to do. A night without `[notify] urls` has a
silent `Notices()`: every method returns at once.

Once per run: `budget` (the first limit reached), and one terminal message — `crashed`,
`baseline_failed` or `finished`, whichever comes first. `stalled` is sent when the night
enters a stall (Cycles.stalled() starts answering) and again only after it left it.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nightlab import ratchet
from nightlab.loop.notify import FLUSH_S, Notifier, Target
from nightlab.store import files, fmt, read
from nightlab.store.kinds import REQUEUED

if TYPE_CHECKING:
    from nightlab.loop.night import Night

LOG = logging.getLogger(__name__)
TAIL_LINES = 8
LINE_CHARS = 400  # a hypothesis or the params, as shown in a message


def _safe(method: Callable[..., None]) -> Callable[..., None]:
    """A message that cannot be composed (the store unreadable, a bug here) is printed and
    skipped: a notification never ends the night."""

    @functools.wraps(method)
    def guarded(self: Notices, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            LOG.warning("the %s notification failed: %s: %s", method.__name__,
                        type(exc).__name__, exc)  # fmt: skip

    return guarded


class Notices:
    def __init__(self, night: Night | None = None, targets: list[Target] | None = None) -> None:
        self.night = night
        self.notifier: Notifier | None = None
        if night is not None and targets:
            n = night.cfg.notify
            self.notifier = Notifier(targets, n.events, n.min_interval_s, self._record)
        self._stall: str | None = None
        self._budget = self._terminal = False

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        assert self.night is not None
        self.night.event(kind, run_id=self.night.run_id, **data)

    def _wants(self, kind: str) -> bool:
        return self.notifier is not None and self.notifier.wants(kind)

    def _send(self, kind: str, what: str, body: str) -> None:
        assert self.notifier is not None and self.night is not None
        self.notifier.send(kind, f"{self.night.cfg.lab.name}: {what}", body)

    # ------------------------------------------------------------------ the events
    @_safe
    def started(self, worker: str, slots: int, max_trials: int | None) -> None:
        if not self._wants("started"):
            return
        night = self.night
        assert night is not None
        limits = [f"up to {max_trials} trials"] if max_trials is not None else []
        if night.deadline:
            limits.append(f"until {time.strftime('%a %H:%M', time.localtime(night.deadline))}")
        self._send("started", "night started", (
            f"Run {night.run_id} started on {night.lab} (worker {worker}, {slots} slot(s), "
            f"{', '.join(limits) or 'no limit but a stop'}).\n"
            f"Nothing to do. Follow it: nightlab watch {night.lab}; stop it: "
            f"nightlab stop {night.lab}."
        ))  # fmt: skip

    @_safe
    def baseline_failed(self, trial_id: int, why: str) -> None:
        self._terminal = True
        if not self._wants("baseline_failed"):
            return
        night = self.night
        assert night is not None
        folder = night.trial_dir(trial_id)
        tail = files.tail(folder / "stderr.log", TAIL_LINES).strip()
        tail = tail or files.tail(folder / "stdout.log", TAIL_LINES).strip() or "(no output)"
        self._send("baseline_failed", "the baseline failed: the night stopped", (
            f"Baseline trial {trial_id} failed ({why}). Without the baseline no trial can be "
            f"judged, so the night stopped.\nThe last lines of its output:\n{tail}\n\n"
            f"Fix: make `{night.cfg.trial.command}` run with the default parameters (see "
            f"{folder}/stderr.log), then start a new night: nightlab reset {night.lab} && "
            f"nightlab run {night.lab}"
        ))  # fmt: skip

    @_safe
    def kept(self, trial_id: int, hypothesis: str | None, params: dict[str, Any],
             judgement: dict[str, Any] | None) -> None:  # fmt: skip
        if not self._wants("kept"):
            return
        night = self.night
        assert night is not None
        j, metric = judgement or {}, night.cfg.objective.metric
        gain, limit = j.get("improvement"), j.get("threshold")
        how = (f"confirmed on {j.get('n')} new seeds (mean {fmt.value(j.get('value'))})"
               if j.get("stage") == "confirm" else "on one run")  # fmt: skip
        shown = _line(" ".join(f"{k}={fmt.value(v)}" for k, v in params.items()))
        hypothesis = _line(hypothesis or "")
        self._send("kept", f"trial {trial_id} kept ({_signed(gain)} {metric})", (
            f"Trial {trial_id} is the new best: {how}, it beat trial {j.get('best_trial')} "
            f"({fmt.value(j.get('best_mean'))}) by {_signed(gain)} {metric}, more than the "
            f"threshold {fmt.value(limit)} (noise σ {fmt.value(j.get('sigma'))}).\n"
            f"Change: {hypothesis or '(no hypothesis given)'}\nParams: {shown or '(none)'}\n"
            f"Nothing to do: its code is on the branch nightlab/{night.cfg.lab.name}/best; "
            f"`nightlab adopt {trial_id} {night.lab}` brings it into your tree."
        ))  # fmt: skip

    @_safe
    def stall(self, stalled: Callable[[], str | None]) -> None:
        """Called after each recorded trial and idle cycle: a message when a stall begins."""
        if not self._wants("stalled"):
            return
        why, was = stalled(), self._stall
        self._stall = why
        if why is None or was is not None:
            return
        night = self.night
        assert night is not None
        self._send("stalled", "the night stalled", (
            f"The night has stalled: {why.removeprefix('stalled: ')}. It goes on, but finds "
            f"nothing.\nTo help it: read the storyline (nightlab watch {night.lab}), add ideas "
            f"or constraints to {night.cfg.lab.brief}, widen the [search] ranges, or stop it: "
            f"nightlab stop {night.lab}."
        ))  # fmt: skip

    @_safe
    def budget(self, limit: str) -> None:
        """A limit is reached (the first one, once per run)."""
        if self._budget or not self._wants("budget"):
            return
        self._budget = True
        night = self.night
        assert night is not None
        self._send("budget", f"limit reached: {limit}", (
            f"The night reached a limit: {limit}. No new trial starts; the running ones "
            "finish (and the finish-up, if one is pending), then the night ends with a "
            f"'finished' message.\nTo go on later: nightlab run {night.lab} --max-trials N "
            "or --hours H."
        ))  # fmt: skip

    @_safe
    def crashed(self, error: BaseException) -> None:
        if self._terminal:
            return
        self._terminal = True
        if not self._wants("crashed"):
            return
        night = self.night
        assert night is not None
        lines = traceback.format_exception(error)
        where = "".join(lines[-4:]).strip()
        self._send("crashed", f"nightlab crashed ({type(error).__name__})", (
            f"The loop died: {type(error).__name__}: {error}\n{where}\n\n"
            "Trials it left running are watched to their end by the next start. Fix the "
            "cause if it is on this machine (a full disk, a broken config), then resume the "
            f"night: nightlab run {night.lab}"
        ))  # fmt: skip

    @_safe
    def ended(self, state: str, reason: str, report: Path | None) -> None:
        """The night ended (any way): `finished` unless a terminal message went already;
        then the queue is flushed, waiting FLUSH_S seconds at most."""
        if self.notifier is None:
            return
        try:
            ended = state not in ("crashed", REQUEUED)  # a requeued night goes on
            if not self._terminal and ended and self._wants("finished"):
                self._finished(state, reason, report)
        finally:
            self._terminal = True
            self.notifier.close(FLUSH_S)

    def _finished(self, state: str, reason: str, report: Path | None) -> None:
        night = self.night
        assert night is not None
        st = read.status(night.store.path, night.cfg.lab.name)
        metric, direction = night.cfg.objective.metric, night.cfg.objective.direction
        base, best, trials = st["baseline"], st["best"], st["trials"]
        if base is None:
            result = "No baseline was measured."
        elif best is None or best["trial"] in base["trials"]:
            result = (f"No trial beat the baseline ({metric} {fmt.value(base['objective'])} "
                      f"± {fmt.value(base['sigma'])}, n={base['n']}).")  # fmt: skip
        else:
            gain = ratchet.gain(direction, best["objective"], base["objective"])
            n, mean = best.get("n") or 0, best.get("confirmed_mean")
            confirmed = f"the mean of {n} runs" if mean is not None else "one run"
            result = (
                f"Best: trial {best['trial']}, {metric} {fmt.value(best['objective'])} "
                f"({confirmed}) against the baseline's "
                f"{fmt.value(base['objective'])} ± {fmt.value(base['sigma'])} (n={base['n']}): "
                f"{_signed(gain)}. Adopt it: nightlab adopt {best['trial']} {night.lab}"
            )
        where = (f"Report: {report / 'final_paper_report.md'}" if report else
                 f"No report was written: nightlab report {night.lab} writes it.")  # fmt: skip
        self._send("finished", f"night {state}", (
            f"The night {state}: {reason or 'no reason given'}.\n{result}\n"
            f"{trials['kept']} kept of {trials['total']} trial(s) "
            f"({trials['failed']} failed).\n{where}"
        ))  # fmt: skip


def _line(text: str, most: int = LINE_CHARS) -> str:
    """Agent text as one short line: its newlines cannot forge lines of the message."""
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 1] + "…"


def _signed(value: Any) -> str:
    return f"{value:+.4g}" if isinstance(value, int | float) else "?"
