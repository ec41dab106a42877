"""The loop's side of finish-up (see finish_request.py for the request): when it is time,
stop exploring while a trial can still finish, give the top candidates their confirmation runs
over new seeds, compute the held-out test metric once for the final pick, write the report
and end the night.

Everything is rebuilt from the store, so a loop restarted mid-finish-up carries on: the
confirmation runs already made (or still running) count, and so does the test run: one that
exists — running (re-attached by the restarted loop, see Slots.reattach), ended, or lost with
its loop and recorded as interrupted — is never started again.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.loop import finish_request
from nightlab.loop.confirm import new_seeds
from nightlab.loop.night import Next, Night, Run
from nightlab.store import kinds, queries, read
from nightlab.store.db import Store

WORKER = "finish-up"


@dataclass(frozen=True)
class Done:
    """Finish-up is complete: the night ends and its report shows the top `top_k`."""

    top_k: int


class Finisher:
    def __init__(self, night: Night) -> None:
        self.night = night
        self.request: finish_request.FinishUp | None = None
        self.forced: str | None = None  # a limit reached while finish-up was pending
        self.queue: list[tuple[Any, int]] | None = None  # (candidate, seed) still to run
        self.night_started: float | None = None

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Read the request from the store (the heartbeat calls this: `nightlab finishup`
        reaches a running loop within a beat)."""
        with read.connect(self.night.store.path) as conn:
            value = queries.meta_value(conn, finish_request.META_KEY)
            self.night_started = queries.night_started(conn)
        self.request = finish_request.parse(value) if value is not None else None

    def save(self, request: finish_request.FinishUp) -> None:
        """Store a request (from `run --finishup-minutes`) and mirror it."""
        with self.night.store.tx() as s:
            Store.set_meta(s, finish_request.META_KEY, request.model_dump())
            Store.event(s, "finishup_requested", run_id=self.night.run_id, **request.model_dump())
        self.request = request
        finish_request.mirror(self.night.state, request, self.night_started)

    def _phase(self, phase: str, **data: Any) -> None:
        """Move the request to `phase`, unless the user changed or cancelled it meanwhile."""
        request = self.request
        if request is None or request.phase == phase:
            return
        with self.night.store.tx() as s:
            stored = finish_request.parse(Store.get_meta(s, finish_request.META_KEY))
            if stored is None or stored.requested_at != request.requested_at:
                return
            if stored.phase == "cancelled":
                self.request = stored
                return
            # the stored request: `nightlab extend` may have moved its run_hours since
            request = stored.model_copy(update={"phase": phase})
            Store.set_meta(s, finish_request.META_KEY, request.model_dump())
            Store.event(s, "finishup_phase", run_id=self.night.run_id, phase=phase, **data)
        self.request = request
        finish_request.mirror(self.night.state, request, self.night_started)
        self.night.report(f"finish-up: {phase}" + (f" ({data['why']})" if "why" in data else ""))

    @property
    def pending(self) -> bool:
        r = self.request
        return r is not None and r.phase not in ("done", "cancelled")

    def window(self) -> tuple[float | None, float | None]:
        return self.request.window(self.night_started) if self.request else (None, None)

    def active(self, now: float | None = None) -> bool:
        if not self.pending:
            return False
        begins, _ = self.window()
        now = time.time() if now is None else now
        return bool(self.forced or self.request.report_now or (begins and begins <= now))

    def room(self) -> bool:
        """Whether a trial started now may still end in time: not once the report is asked
        for now, nor when it would end after the finish-up window (README: no trial starts
        that cannot finish before the window ends)."""
        if not self.pending:
            return True
        if self.request.report_now:
            return False
        ends = self.ends()
        return ends is None or time.time() + self.trial_seconds() <= ends

    def ends(self) -> float | None:
        """When the night must be over: the end of the finish-up window, if any."""
        return self.window()[1] if self.pending else None

    def context(self) -> str | None:
        """What a deadline-aware worker reads."""
        if not self.pending:
            return None
        line = self.request.describe(self.night_started)
        if self.active():
            line += (
                ". FINISH-UP IS ON: propose only low-risk, high-value changes whose trial "
                "finishes well before the end; the best candidates get confirmation runs next"
            )
        return line

    # ------------------------------------------------------------------ test metric
    def screen(self, trial_id: int, kind: str, out: Any) -> Any:
        """Selection sees validation metrics only: a test metric a trial printed is dropped,
        except in the final pick's test run, where it is recorded as the `test_metric`. With
        `[trial] evaluate` the metrics are the evaluation's alone (local.conclude): when it
        does not report the test metric, the figure is missing, never the trial's own."""
        metric = self.night.cfg.objective.test_metric
        if not metric or metric not in out.metrics:
            if kind == "test":
                reason = out.reason
                if kinds.interrupted(out.status, out.reason):  # e.g. lost with its loop
                    reason = (f"the test run (trial {trial_id}) was {out.reason}; not run "
                              "again: the held-out data is read once")  # fmt: skip
                    self.night.report(f"held-out {metric}: none, {reason}")
                elif reason is None and self.night.cfg.trial.evaluate:
                    reason = (f"the evaluation ([trial] evaluate) did not report {metric!r}; "
                              "what the trial printed does not count")  # fmt: skip
                with self.night.store.tx() as s:
                    Store.event(s, "test_metric_missing", trial_id=trial_id, metric=metric,
                                status=out.status, reason=reason)  # fmt: skip
            return out
        value = out.metrics[metric]
        metrics = {k: v for k, v in out.metrics.items() if k != metric}
        with read.connect(self.night.store.path) as conn:  # the candidate's first trial names it
            pick = queries.first_of_candidate(conn, trial_id) or trial_id
        with self.night.store.tx() as s:
            if kind == "test":
                Store.event(s, "test_metric", trial_id=pick, trial=pick, metric=metric,
                            value=value, test_trial=trial_id)  # fmt: skip
                self.night.report(f"held-out {metric} of the final pick (trial {pick}): {value:g}")
            else:
                Store.event(s, "test_metric_ignored", trial_id=trial_id, metric=metric)
        return dataclasses.replace(out, metrics=metrics)

    # ------------------------------------------------------------------ steps
    def step(self, running: list[str], baseline_complete: bool) -> Run | Next | Done:
        """During finish-up (`running`: the kinds of the trials in flight): EXPLORE (an
        ordinary cycle may run), a confirmation or test run to start, WAIT (for running
        trials), or Done."""
        request, now = self.request, time.time()
        _, ends = self.window()
        est = self.trial_seconds()
        if request.phase == "scheduled":
            self._phase("active", why=self.forced or "the finish-up window began")
        if request.phase in ("scheduled", "active"):
            need = 0.0 if request.report_now else est * self._confirm_batches()
            hurry = self.forced or request.report_now
            if not hurry and not baseline_complete:
                return Next.EXPLORE  # nothing to confirm before the noise is measured
            if not hurry and ends and now + est + need <= ends:
                return Next.EXPLORE
            if "trial" in running:
                return Next.WAIT  # started to fit the deadline: they join the candidates
            self._phase("confirming", why=self.forced or "no time for another exploration")
        if self.queue is None and "confirm" in running:
            return Next.WAIT  # the ratchet's verdicts first: what they keep is a candidate
        if self.queue is None:  # (and the seeds its running runs have taken are known)
            self.queue = [] if request.report_now else self._confirmations()
        if self.queue and (ends is None or now + est <= ends):
            candidate, seed = self.queue.pop(0)
            return self._run(candidate, "confirm", seed)
        if running:
            return Next.WAIT
        if not self._tested() and (test := self._test_run(now, est, ends)) is not None:
            return test
        self._phase("reporting")  # the loop writes it once the run is closed, then `done`
        return Done(request.top_k)

    def reported(self, where: Any) -> None:
        if self.request is not None and self.request.phase == "reporting":
            self._phase("done", report=str(where) if where else None)

    def trial_seconds(self) -> float:
        """A trial's expected length, with a margin for starting and recording it: the
        median of the last ten that succeeded, plus 10% and 50 ms."""
        with read.connect(self.night.store.path) as conn:
            walls = queries.recent_trial_seconds(conn, 10)
        if not walls:
            return self.night.cfg.trial.budget_seconds
        return statistics.median(walls) * 1.1 + 0.05

    def _confirm_batches(self) -> int:
        """Trial lengths finish-up needs after exploring: confirmations, then the test run."""
        r = self.request
        batches = -(-(r.top_k * r.final_rounds) // self.night.slots) if r.final_rounds else 0
        return batches + (1 if self.night.cfg.objective.test_metric else 0)

    def _ranked(self) -> tuple[Any, list[Any]]:
        """The night as the report reads it, and its candidates best first."""
        from nightlab.report import candidates, data

        night = data.load(self.night.lab, self.night.cfg)
        return night, candidates.rank(night, candidates.group(night))

    def _confirmations(self) -> list[tuple[Any, int]]:
        """The runs still owed: `final_rounds` per top-k candidate, on seeds it never ran."""
        from nightlab.report.candidates import trusted

        request = self.request
        night, ranked = self._ranked()
        ranked = trusted(night, ranked)  # the final pick is one of these
        todo = []
        with read.connect(self.night.store.path) as conn:
            best = (read.best(conn) or {}).get("trial")
        top = ranked[: request.top_k]  # and the ratchet's best: the code on the best branch
        top += [c for c in ranked[request.top_k :] if best in c.ids]
        workers = {d["id"]: d["worker"] for d in night.decisions}
        for candidate in top:  # the ratchet's runs (its confirmations, the best's re-runs) aside
            made = sum(1 for t in candidate.trials if t["kind"] == "confirm"
                       and workers.get(t["decision_id"]) == WORKER)  # fmt: skip
            seeds = new_seeds(self.night, {t["seed"] for t in candidate.trials})
            todo += [(candidate, next(seeds)) for _ in range(request.final_rounds - made)]
        return todo

    def _tested(self) -> bool:
        """Whether this night has its test run, from the store (not from this loop's memory:
        a loop killed during finish-up must not look at the test data twice)."""
        with read.connect(self.night.store.path) as conn:
            return bool(queries.test_runs(conn))

    def _test_run(self, now: float, est: float, ends: float | None) -> Run | None:
        """Run the final pick once with NIGHTLAB_TEST=1 for `[objective] test_metric`."""
        metric = self.night.cfg.objective.test_metric
        if not metric:
            return None
        from nightlab.report.candidates import final_pick

        night, ranked = self._ranked()
        if self.request.report_now or not ranked or (ends is not None and now + est > ends):
            why = "report now" if self.request.report_now else "no time left" if ranked else (
                "no candidate")  # fmt: skip
            with self.night.store.tx() as s:
                Store.event(s, "test_metric_skipped", run_id=self.night.run_id, reason=why)
            return None
        pick = final_pick(night, ranked, None)  # the best mean among confirmed candidates
        return self._run(pick, "test", pick.first["seed"])

    def _run(self, candidate: Any, kind: str, seed: int) -> Run:
        """A finish-up run (`confirm` or `test`) of existing code: no gate, no twin check
        — it repeats a candidate on purpose."""
        first = candidate.first
        what = "confirmation run" if kind == "confirm" else "held-out test run"
        decision = Decision(
            action="run",
            rationale=f"finish-up: {what} of trial {first['id']} (seed {seed})",
            hypothesis=f"trial {first['id']}'s result holds on another seed"
            if kind == "confirm"
            else "the final pick, measured once on the held-out test set",
            dimension=first.get("dimension"),
            params=dict(first["params"]),
        )
        return Run(decision, kind, first["commit"], seed,
                   confirms=first["id"] if kind == "confirm" else None)  # fmt: skip
