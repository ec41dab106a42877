"""The words of the `trials` table: what a trial is (kind), how it ended (status), what the
ratchet made of it (verdict), and the one rule for a trial cut short by nightlab itself.

Plain constants (no SQLAlchemy, no pydantic): the fast views and the trial runners read them.
"""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["baseline", "trial", "confirm", "test"]
"""baseline: the default parameters, repeated over seeds (the noise); trial: a worker's
change; confirm: a repeat on a new seed of a screened trial (the ratchet's confirmation) or
of a top candidate (finish-up), its `confirms` column naming that trial; test: finish-up's
one run of the final pick with the held-out metric (NIGHTLAB_TEST=1)."""
KINDS: tuple[Kind, ...] = get_args(Kind)
EXPLORING: tuple[Kind, ...] = ("baseline", "trial")  # what the worker learns from

Status = Literal["running", "succeeded", "failed", "timeout", "killed", "pruned"]
"""pruned: stopped early by `[pruning]` (its curve was worse than the reference at a step);
neither a failure nor kept, never retried or repaired."""
STATUSES: tuple[Status, ...] = get_args(Status)
FAILED: tuple[Status, ...] = ("failed", "timeout", "killed")  # every way a trial can fail

Verdict = Literal[
    "baseline", "screened", "kept", "not_confirmed", "discarded", "confirmation", "test"
]
"""The `verdict` column: the ratchet's word on a worker's trial — `screened` (it passed the
screen; its confirmation runs are due), then `kept` or `not_confirmed`; or `discarded` (it
did not pass the screen) — else what the run was (a baseline repeat, a confirmation run,
the held-out test run)."""
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

RATCHET = "ratchet"  # the worker of confirmation runs the ratchet starts (finish-up's: "finish-up")

REQUEUED = "requeued"  # a run's state: its Slurm loop job was requeued; the night resumes
LIVE_RUN_STATES = ("running", "crashed", REQUEUED)  # runs whose night is not over

INTERRUPTED = "interrupted"  # reasons of trials cut short by nightlab's own fate, not theirs
CUT_SHORT: tuple[Status, ...] = ("killed", "timeout")  # the statuses such a trial ends with
INTERRUPTED_SQL = (  # `interrupted()` over the trials table (GLOB: case-sensitive, as startswith)
    "(status IN ('killed', 'timeout') AND COALESCE(reason, '') GLOB 'interrupted*')"
)


def interrupted(status: str, reason: str | None) -> bool:
    """Whether a trial was cut short by nightlab's own fate (a stop, a dead loop, no slot
    after a restart) rather than by anything it did: such a trial may run again (not a
    held-out test run: the test data is read once a night)."""
    return status in CUT_SHORT and (reason or "").startswith(INTERRUPTED)
