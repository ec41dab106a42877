"""The baseline: the defaults on the unmodified code, repeated over seeds to measure the
noise before any worker trial is judged. A baseline that fails ends the night."""

from __future__ import annotations

from nightlab.agents.decision import Decision
from nightlab.loop.night import Next, Night, NightError, Run
from nightlab.store import history, kinds


class Baseline:
    def __init__(self, night: Night) -> None:
        self.night = night
        self.done = False  # every repeat succeeded: worker cycles may begin

    def complete(self) -> bool:
        """All baseline repeats have run (finish-up waits for them: no noise, no ranking)."""
        if not self.done:
            states = history.baseline_states(self.night.store)
            succeeded = sum(1 for _, st, _ in states if st == "succeeded")
            return succeeded >= self.night.cfg.ratchet.baseline_repeats
        return True

    def next(self, waiting: set[int]) -> Run | Next | None:
        """The next repeat to start, WAIT (the noise estimate is not ready), or None (done).
        Failed repeats that auto-repair ran again, or will (`waiting`), do not count."""
        night, cfg = self.night, self.night.cfg
        retried = waiting | history.retried(night.store)
        rows = [r for r in history.baseline_states(night.store) if r[0] not in retried]
        done = sum(1 for _, st, _ in rows if st == "succeeded")
        live = sum(1 for _, st, _ in rows if st == "running")
        fatal = [
            (i, r)
            for i, st, r in rows
            if st in ("failed", "timeout")
            or (st == "killed" and not kinds.interrupted(st, r))
        ]
        if fatal:
            tid, why = fatal[0]
            night.notices.baseline_failed(tid, why)
            raise NightError(
                f"the baseline trial {tid} failed ({why}); see {night.trial_dir(tid)}/"
                "stderr.log, make the command run with the default parameters, then start a "
                f"new night: nightlab reset {night.lab} && nightlab run {night.lab}"
            )
        repeats = cfg.ratchet.baseline_repeats
        if done + live < repeats:
            seed = cfg.trial.seed + len(rows)
            decision = Decision(
                action="run",
                rationale=f"baseline repeat {len(rows) + 1}: defaults, unmodified code, "
                f"seed {seed} (measures the noise)",
                hypothesis="the defaults as they are",
                params=cfg.defaults(),
            )
            return Run(decision, "baseline", night.base_commit, seed)
        if done < repeats:
            return Next.WAIT
        self.done = True
        self._spread()
        return None

    def _spread(self) -> None:
        """Repeats over different seeds that all gave the same value measure no noise: the
        command ignores NIGHTLAB_SEED (or is deterministic), and any gain above
        `min_delta` will pass as beating the noise. Said once (a warning, an event)."""
        night, ratchet = self.night, self.night.cfg.ratchet
        values, said = history.baseline_values(night.store)
        if said or len(values) < 2 or len(set(values)) > 1:
            return
        night.event("baseline_no_spread", run_id=night.run_id, value=values[0],
                    repeats=len(values))  # fmt: skip
        night.report.warning(
            f"warning: the {len(values)} baseline repeats, each on its own seed, all gave "
            f"{night.cfg.objective.metric} = {values[0]:.6g}: the command ignores "
            "NIGHTLAB_SEED or is deterministic, so no noise is measured and any gain above "
            f"[ratchet] min_delta ({ratchet.min_delta:g}) counts as beating it. Seed the "
            "training from NIGHTLAB_SEED, or set min_delta to the smallest gain worth keeping"
        )
