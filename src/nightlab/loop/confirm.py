"""The ratchet's confirmations: a worker's trial that passed the screen is re-run on new
seeds (`[ratchet] confirm_runs`) before any new work starts, then judged on those runs
alone against the best of that moment (see nightlab.ratchet): `kept` or `not_confirmed`.
A confirmation run that fails or does not even beat the best's mean ends it early.

Everything is read from the store, so a loop restarted mid-confirmation carries on: the
runs already made (or still running) count, the ones cut short by nightlab run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nightlab import ratchet
from nightlab.agents.decision import Decision
from nightlab.loop.night import Night, Run
from nightlab.ratchet import Best
from nightlab.store import kinds, read
from nightlab.store.db import Trial

WORKER = kinds.RATCHET  # the decisions of confirmation runs are nightlab's own
SEED_OFFSET = 1000  # new seeds start here above [trial] seed: never a seed already used


def new_seeds(night: Night, used: set[int]) -> Iterator[int]:
    """Seeds a candidate never ran, in order."""
    base = night.cfg.trial.seed + SEED_OFFSET
    return (s for s in range(base, base + 100_000) if s not in used)


class Confirmations:
    def __init__(self, night: Night) -> None:
        self.night = night

    def pending(self) -> bool:
        """Some screened trial awaits its confirmation (its runs are due or running)."""
        return self.night.screened()  # read once per recorded trial, with the best

    def _runs(self, trial_id: int) -> list[Trial]:
        """The confirmation runs of `trial_id` that count (not those nightlab cut short)."""
        rows = self.night.store.trials(Trial.confirms == trial_id)
        return [r for r in rows if not kinds.interrupted(r.status, r.reason)]

    def _reruns(self, best: Best) -> list[Any]:
        """Runs of the best made to measure it again (running or ended; not its selection
        run, baseline repeats or its own confirmation runs, nor those nightlab cut short)."""
        with read.connect(self.night.store.path) as conn:
            runs = read.candidate_runs(conn, best.trial, running=True)
        head = self.night.store.trials(Trial.id == best.trial)
        own = set(((head[0].judgement or {}) if head else {}).get("runs") or ())
        return [r for r in runs if r["kind"] == "confirm" and r["id"] not in own
                and not kinds.interrupted(r["status"], r["reason"])]  # fmt: skip

    def _best_due(self, row: Trial) -> Run | None:
        """One more run of the best beside a challenger's confirmation while the best has
        fewer runs than the baseline had (a kept trial has `confirm_runs`): an estimate that
        came out low would let every later challenger past the screen. One at a time, and
        one per challenger: none while one runs, none if one began after the challenger."""
        best, r = self.night.best(), self.night.cfg.ratchet
        if best is None or best.n >= max(r.baseline_repeats, r.confirm_runs + 1):
            return None
        again = self._reruns(best)
        if any(x["status"] == "running" or x["id"] > row.id for x in again):
            return None
        with read.connect(self.night.store.path) as conn:
            used = {x["seed"] for x in read.candidate_runs(conn, best.trial, running=True)}
        seed = next(new_seeds(self.night, used))
        decision = Decision(
            action="run",
            rationale=f"re-measure the best (trial {best.trial}, n={best.n}) on seed {seed} "
            f"beside trial {row.id}'s confirmation",
            hypothesis=f"trial {best.trial}'s estimate holds on a new seed",
            params=dict(best.params),
        )
        return Run(decision, "confirm", best.commit, seed, confirms=best.trial)

    def _futile(self, runs: list[Trial]) -> bool:
        """A confirmation run failed, or did not even beat the best's mean: its mean cannot
        plausibly clear the bar, and its remaining runs would only cost."""
        best = self.night.best()
        for r in runs:
            if r.status == "running":
                continue
            if r.status != "succeeded" or not ratchet.finite(r.objective):
                return True
            if best is not None and not ratchet.better(
                self.night.cfg.objective.direction, r.objective, best.objective
            ):
                return True
        return False

    def next(self) -> Run | None:
        """The next confirmation run to start, or None when none is due."""
        if not self.pending():
            return None
        want = max(self.night.cfg.ratchet.confirm_runs, 1)  # (screened before it was 0)
        for row in self.night.store.trials(Trial.verdict == "screened"):
            runs = self._runs(row.id)
            if self._futile(runs):
                continue  # judged as soon as its runs end
            if len(runs) >= want:
                if (again := self._best_due(row)) is not None:
                    return again
                continue
            used = {row.seed} | {r.seed for r in self.night.store.trials(Trial.confirms == row.id)}
            seed = next(new_seeds(self.night, used))
            gain = (row.judgement or {}).get("improvement")
            decision = Decision(
                action="run",
                rationale=f"confirmation run {len(runs) + 1}/{want} of trial {row.id} on seed "
                f"{seed}: it passed the screen"
                + (f" (+{gain:.4g})" if isinstance(gain, float) else ""),
                hypothesis=f"trial {row.id}'s gain holds on a new seed",
                dimension=row.dimension,
                params=dict(row.params),
            )
            return Run(decision, "confirm", row.commit, seed, confirms=row.id)
        return None

    def settle(self) -> list[tuple[int, dict[str, Any]]]:
        """Judge every screened trial whose confirmation runs have all ended; returns
        (trial id, its record) of those judged. A best kept here moves the best branch."""
        night, judged = self.night, []
        want = max(night.cfg.ratchet.confirm_runs, 1)
        for row in night.store.trials(Trial.verdict == "screened"):
            runs = self._runs(row.id)
            futile = self._futile(runs)
            if (len(runs) < want and not futile) or any(r.status == "running" for r in runs):
                continue
            best = night.best()
            if (
                not futile
                and best is not None
                and any(x["status"] == "running" for x in self._reruns(best))
            ):
                continue  # the best is being re-measured: its verdict waits for that run
            if not futile and self._best_due(row) is not None:
                continue  # and will be, before the verdict
            verdict, judgement, why = self._judge(row, runs)
            record, line = night.journal.judged(row.id, verdict, judgement, why)
            night.forget()
            if verdict == "kept":
                night.ws.set_best(row.commit)
                night.notices.kept(row.id, row.hypothesis, row.params, judgement)
            night.report(line)
            judged.append((row.id, record))
        return judged

    def _judge(self, row: Trial, runs: list[Trial]) -> tuple[str, dict[str, Any], str]:
        """(verdict, judgement, the verdict in words)."""
        night = self.night
        screen = row.judgement or {}
        best = night.best()
        assert best is not None  # a screened trial was compared with one
        failed = [r for r in runs if r.status != "succeeded" or not ratchet.finite(r.objective)]
        if failed:  # (best_trial: it still counts among the best's challengers)
            why = "a confirmation run failed: " + ", ".join(f"trial {r.id} {r.status}"
                                                            for r in failed)  # fmt: skip
            return "not_confirmed", {"verdict": "not_confirmed", "stage": "confirm",
                                     "reason": why, "runs": [r.id for r in runs],
                                     "best_trial": best.trial, "screen": screen}, why  # fmt: skip
        with read.connect(night.store.path) as conn:
            k = read.challengers(conn, best.trial, judged=True) + 1
        v = ratchet.confirm(night.cfg, [r.objective for r in runs], best, night.noise(), k)
        again = [r["id"] for r in self._reruns(best)]
        record = {**v.record(), "runs": [r.id for r in runs], "best_runs": again,
                  "screen": screen}  # fmt: skip
        direction = night.cfg.objective.direction
        below = [r for r in runs if not ratchet.better(direction, r.objective, best.objective)]
        if v.verdict == "kept" and below:  # whatever order the runs ended in, on any slots
            why = (
                "not_confirmed: "
                + ", ".join(f"trial {r.id} ({r.objective:.4g})" for r in below)
                + f" did not beat the best's mean {best.objective:.4g}, which ends a "
                f"confirmation ({v.describe()})"
            )
            return "not_confirmed", {**record, "verdict": "not_confirmed", "reason": why}, why
        return v.verdict, record, v.describe()

