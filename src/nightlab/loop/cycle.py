"""A worker cycle: the worker's next decision (thought off the loop's thread for slow
workers), the mentor's review when it is due, then admission — the gate, the edits as a
commit on the base, the smoke checks, no twin of a trial that ran or is running.

A decision is made on the best of the moment its thought starts (the worker's view of the
code is pinned to it) and carried onto the best of the moment it runs (loop/admission.py);
a plan that cannot be is asked again at once on the new best.

A cycle decides; the loop starts what it admits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from tarfile import TarError
from typing import Any

from nightlab.agents import Worker, context
from nightlab.agents.decision import Decision
from nightlab.agents.gate import GateResult
from nightlab.agents.tools import LabView, Withheld
from nightlab.loop import inflight
from nightlab.loop.admission import Admission, admit
from nightlab.loop.budget import Budget
from nightlab.loop.finishup import Finisher
from nightlab.loop.night import Next, Night, Run
from nightlab.loop.research import Research
from nightlab.loop.slots import Slots
from nightlab.loop.thinking import Thinker, Thought
from nightlab.ratchet import Best
from nightlab.store import files, queries, ranking, read
from nightlab.store.db import Store
from nightlab.store.redact import redact
from nightlab.trials import smoke
from nightlab.trials.workspace import WorkspaceError


class Cycles:
    def __init__(
        self,
        night: Night,
        worker: Worker,
        mentor: Any,
        budget: Budget,
        slots: Slots,
        finisher: Finisher,
        watch: Callable[[], bool],
    ) -> None:
        self.night, self.worker, self.mentor = night, worker, mentor
        self.budget, self.slots, self.finisher = budget, slots, finisher
        self.watch = watch  # called while admission waits (a smoke check); False: stop now
        self.thinker = Thinker(worker, mentor, night.cfg)
        self.research = Research(night, None)  # the loop gives it the lab's Library
        self.worker_cycles = 0  # decisions the worker made in this run (mentor cadence)
        self.waits = 0  # cycles in a row that ran nothing
        self.errors = 0  # worker errors in a row (the backoff before asking again)
        self.same_errors, self._last_error = 0, ""  # of them, alike (the night gives up)
        self.stop_reason: str | None = None  # set when the worker stops the night
        # the best the thought in progress (or ready) was planned on: (commit, its trial)
        self._planned_on: tuple[str, int | None] | None = None

    def next(self) -> Run | Next:
        """One cycle: a trial to start, IDLE (nothing runnable), or WAIT (still thinking,
        or a research decision's papers not there yet: the next context shows them)."""
        if self.thinker.idle and self.research.busy:
            return Next.WAIT
        if self.thinker.idle:
            self._think()
        if not self.thinker.ready():
            return Next.WAIT
        thought = self.thinker.take()
        decision, usage = thought.decision, self.budget.charge(thought.usage)
        if isinstance(decision, Exception):
            wait = Decision(action="wait", rationale=f"worker error: {decision}"[:2000])
            reason = "worker raised " + type(decision).__name__
            self.night.journal.idle(self.worker.name, wait, [reason], usage)
            self.waits += 1
            self.errors += 1  # a provider in trouble (429, 500, timeouts) is asked less often
            self._failed(decision)
            return Next.IDLE
        self.errors, self.same_errors = 0, 0
        if self.mentor is not None and thought.why is None and not self.slots.running:
            # planned while a trial ran; that trial has ended and the night may have stalled
            if why := self.stalled():
                self.thinker.review(thought, why, context.render(self.context(full=True)))
        decision, planned = self._reviewed(thought), self._planned_on
        if decision.cites:
            decision = self._cited(decision)
        best = self.night.best()
        base = best.commit if best else self.night.base_commit
        admission = self._admit(decision, base, best.params if best else None, planned)
        gate, commit = admission.gate, admission.commit
        if not gate.accepted or decision.action != "run":
            trace = self.night.journal.idle(self.worker.name, decision, gate.reasons, usage)
            if decision.action == "stop" and gate.accepted:
                self.stop_reason = f"the worker stopped the night: {decision.rationale}"
            if decision.action == "research" and gate.accepted:
                self.research.start(trace, decision.query or "")
            self.waits += 1
            if admission.reask:  # planned on an older best: asked again, at once, on this one
                self._moved(admission, planned, best, trace)
                self._think()
                return Next.WAIT
            return Next.IDLE
        if admission.rebased:
            self._moved(admission, planned, best, None)
        self.waits = 0
        # the base admission built on, even if a trial watched meanwhile changed the best
        return Run(decision, "trial", commit, self.night.cfg.trial.seed, usage, best,
                   tuple(gate.notes))  # fmt: skip

    def _failed(self, error: Exception) -> None:
        """A worker error is printed; the same one max_same_errors times in a row ends the
        night with that line (a CLI that cannot start fails the same way every time)."""
        line = f"{error}".strip().splitlines()[0][:500] if f"{error}".strip() else "no message"
        self.night.report.warning(f"worker error ({type(error).__name__}): {line}")
        shape = re.sub(r"\d+", "#", f"{type(error).__name__}: {line}")
        self.same_errors = self.same_errors + 1 if shape == self._last_error else 1
        self._last_error = shape
        limit = self.night.cfg.agents.max_same_errors
        if self.same_errors >= limit:
            self.stop_reason = f"the worker failed {limit} times in a row the same way: {line}"

    def plan(self) -> None:
        """While every slot is busy, get the next decision now so that a freed slot starts
        at once; it is gated against the base of the moment it runs."""
        budget = self.budget
        if (
            self.thinker.idle
            and budget.limit_reached() is None
            and not budget.at_max_trials()  # the running trials may need confirming, no more
            and not self.finisher.active()
        ):
            self._think()

    def close(self) -> Thought | None:
        """End the thinking; a decision made ahead but never used is returned (it cost)."""
        return self.thinker.close()

    def _admit(
        self, decision: Decision, base: str, params: dict | None,
        planned: tuple[str, int | None] | None,
    ) -> Admission:  # fmt: skip
        night = self.night
        try:
            return admit(
                decision, night.cfg, night.ws, night.store.path, base,
                params if params is not None else night.cfg.defaults(), self.watch,
                planned_on=planned[0] if planned else None,
            )  # fmt: skip
        except (WorkspaceError, ValueError, OSError, OverflowError, TarError) as exc:
            reason = f"the edit cannot be applied: {exc}"  # git refused
            return Admission(GateResult(False, [reason]), base)
        except RecursionError:  # a hostile structure got past every cap: a wait, not a crash
            reason = "the decision is nested too deeply to be judged"
            return Admission(GateResult(False, [reason]), base)

    def _moved(
        self, admission: Admission, planned: tuple[str, int | None] | None,
        best: Best | None, trace: str | None,
    ) -> None:  # fmt: skip
        """Record and report a plan made on an older best: carried onto the current one
        (`plan_rebased`), or refused and asked again (`plan_conflict`, `plan_duplicate`)."""
        night, carried = self.night, admission.carried
        assert carried is not None and planned is not None
        onto = best.commit if best else night.base_commit
        data = {
            "planned_on": planned[0], "planned_on_trial": planned[1], "planned": admission.planned,
            "onto": onto, "onto_trial": best.trial if best else None,
        }  # fmt: skip
        was = f"planned on trial {planned[1]}'s code ({planned[0][:12]})"
        now = f"trial {data['onto_trial']}'s ({onto[:12]})"
        if admission.rebased:
            files = sorted(carried.files)
            night.event("plan_rebased", run_id=night.run_id, **data, commit=admission.commit,
                        files=files, contained=carried.contained)  # fmt: skip
            what = ("its change was already there; its params run on it" if carried.contained
                    else ", ".join(files))  # fmt: skip
            night.report(f"a plan {was} was rebased onto the best, {now}: {what}")
        elif carried.conflicts:
            night.event("plan_conflict", run_id=night.run_id, trace_id=trace, **data,
                        conflicts=carried.conflicts)  # fmt: skip
            night.report(f"a plan {was} conflicts with the best, {now}, in "
                         f"{', '.join(carried.conflicts)}: not run; asked again")  # fmt: skip
        else:
            night.event("plan_duplicate", run_id=night.run_id, trace_id=trace, **data)
            night.report(f"a plan {was} is already in the best, {now}: not run; asked again")

    # ------------------------------------------------------------------ the worker's view
    def context(self, full: bool) -> dict[str, Any]:
        night = self.night
        best = night.best()
        ctx = {
            "objective": night.cfg.objective.model_dump(),
            "best": None
            if best is None
            else {"objective": best.objective, "trial": best.trial, "params": best.params},
            "in_flight": [f["trial"] for f in self._in_flight()],
            "deadline": night.deadline,
            "finishup": self.finisher.context(),
        }
        return {**ctx, **self._full_context()} if full else ctx

    def _full_context(self) -> dict[str, Any]:
        """What an LLM worker reads each cycle (see agents/context.py)."""
        night = self.night
        return context.gather(
            night.cfg, night.lab, night.store.path,
            trials_left=self.budget.trials_left(), deadline=night.deadline,
            sigma=night.sigma(), stalled=self.stalled(),
            in_flight=inflight.describe(night, self._in_flight()),
        )  # fmt: skip

    def _in_flight(self) -> list[dict[str, Any]]:
        """The running trials an agent is told of: the held-out test run is not one."""
        return [f for f in self.slots.in_flight() if f["kind"] != "test"]

    def lab_view(self) -> LabView:
        """The worker's read-only window on the lab: files at the best code its thought
        started from (what its edits are applied to; admission carries them further), and
        the logs and diffs of the trials the store knows, the held-out test run's withheld."""
        night = self.night

        def base() -> str:
            return self._planned_on[0] if self._planned_on else night.base()

        def trial_file(trial: int, name: str) -> str | None:
            # only a trial the store knows, never the held-out test run (nor its test metric)
            with read.connect(night.store.path) as conn:
                kind = queries.trial_kind(conn, trial)
            if kind == "test":
                raise Withheld(f"trial {trial} is the held-out test run: no agent may read it")
            path = night.trial_dir(int(trial)) / name  # never through a link a trial planted
            ok = kind is not None and path.is_file()
            return files.tail(path, max_bytes=1 << 20) if ok else None

        def export(dest: Path) -> None:  # the user's links to absolute paths are left out
            smoke.export(night.ws, base(), dest, links=False)

        return LabView(
            files=lambda: night.ws.files(base()),
            read=lambda p: night.reader(base())(p),
            editable=night.cfg.editable_files,
            leaderboard=lambda k: ranking.leaderboard(
                night.store.path, night.cfg.objective.direction, k
            ),
            trial_file=trial_file,
            export=export,
        )

    # ------------------------------------------------------------------ the mentor
    def _think(self) -> None:
        """Start the worker's next decision (in the background for slow workers); the
        mentor reviews it every mentor_every worker cycles, or when the night stalls with
        nothing running (never while a trial is mid-execution)."""
        best = self.night.best()  # what the worker sees and its edits are made on
        self._planned_on = (best.commit, best.trial) if best else (self.night.base_commit, None)
        review = None
        if self.mentor is not None:
            self.worker_cycles += 1
            agents = self.night.cfg.agents
            every, kind = agents.mentor_every, "the regular review"
            if agents.interaction_mode == "builder_health_helper":
                every, kind = agents.mentor_health_every, "a health check of the Builder"
            why = f"{kind} (every {every} cycles)" if self.worker_cycles % every == 0 else None
            if why is None and not self.slots.running:
                why = self.stalled()
            if why is not None:
                review = (why, context.render(self.context(full=True)))
        self.thinker.start(self.context(self.worker.wants_context), review)

    def _reviewed(self, thought: Thought) -> Decision:
        """The decision after the mentor's review: its replacement runs when it judged the
        night off track and mentor_apply_suggestions is on."""
        decision = thought.decision
        assert isinstance(decision, Decision)
        review, usage = thought.review, self.budget.charge(thought.mentor_usage)
        if thought.why is None:
            return decision
        night = self.night
        if isinstance(review, Exception):
            with night.store.tx() as s:
                Store.event(s, "mentor_error", run_id=night.run_id, error=f"{review}"[:2000])
                if usage:
                    Store.event(s, "agent_usage", run_id=night.run_id, role="mentor", **usage)
            return decision
        replace = (
            review.verdict == "off_track"
            and review.replacement is not None
            and night.cfg.agents.mentor_apply_suggestions
        )
        night.journal.mentor(review, thought.why, usage, replaced=replace)
        night.report(
            f"mentor: {review.verdict} ({thought.why}) — {review.critique[:200]}"
            + (" — its replacement runs" if replace else "")
        )
        return review.replacement if replace else decision

    def _cited(self, decision: Decision) -> Decision:
        """Only papers the lab has seen may be cited (a model may invent an id): the
        others are dropped, each with a note on the decision's record."""
        library = self.research.library

        def known(key: str) -> bool:
            try:
                return library is not None and library.read(key, offline=True) is not None
            except ValueError:  # not a key at all (too long, a line break, a secret)
                return False

        kept = [k for k in decision.cites if known(k)]
        dropped = [k for k in decision.cites if k not in kept]
        if dropped:
            decision = decision.model_copy(update={"cites": kept})
            decision.set_notes([*decision.notes, *(  # redacted before the cut halves a secret
                f"cites: {redact(k)[:80]!r} dropped: no such paper in the lab (search_papers "
                "first)" for k in dropped
            )])  # fmt: skip
        return decision

    def stalled(self) -> str | None:
        k = self.night.cfg.agents.stall_trials
        with read.connect(self.night.store.path) as conn:
            recent = queries.last_finished_trials(conn, max(k, 3))
        if len(recent) >= k and not any(v == "kept" for _, v in recent[:k]):
            return f"stalled: no trial kept in the last {k}"
        if len(recent) >= 3 and all(st not in ("succeeded", "pruned") for st, _ in recent[:3]):
            return "stalled: the last 3 trials failed"  # a pruned one ran well: not a failure
        if self.waits >= 5:
            return f"stalled: {self.waits} cycles in a row ran nothing"
        return None
