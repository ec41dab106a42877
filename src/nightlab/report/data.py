"""Everything a report needs, read once from `.nightlab/state.db` (stdlib sqlite3, read-only).

The queries live in the store (`nightlab.store.read`, `nightlab.store.queries`).
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nightlab import UserError, ratchet
from nightlab.config import Config
from nightlab.store import queries, read
from nightlab.store.kinds import FAILED, Kind
from nightlab.store.paths import LabPaths

TEST_KIND: Kind = "test"  # finish-up's one run of the final pick with NIGHTLAB_TEST=1
TEST_NOTES = ("test_metric_skipped", "test_metric_missing")
MENTOR_KINDS = ("mentor", "mentor_review")  # the loop records reviews as `mentor_review`
EVENT_KINDS = (*MENTOR_KINDS, "mentor_error", "test_metric", "ratchet", *TEST_NOTES)


class ReportError(UserError):
    """The report cannot be written as asked; the message says what to do."""


@dataclass
class Night:
    """One night of one lab as plain data (rows as dicts, JSON columns decoded)."""

    lab: Path
    cfg: Config
    night_id: str
    meta: dict[str, Any]
    runs: list[dict[str, Any]]
    cycles: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    mentor: list[dict[str, Any]]
    mentor_errors: list[dict[str, Any]]
    test_event: dict[str, Any] | None
    ratchet: dict[int, dict[str, Any]]  # trial id → its ratchet event (improvement, threshold)
    test_notes: list[dict[str, Any]]  # why no held-out figure came (skipped, missing)
    baseline: dict[str, Any] | None
    best: dict[str, Any] | None
    usage: dict[str, Any]
    storyline: list[str] = field(default_factory=list)

    @property
    def paths(self) -> LabPaths:
        return LabPaths(self.lab)

    @property
    def state_dir(self) -> Path:
        return self.paths.state

    @property
    def metric(self) -> str:
        return self.cfg.objective.metric

    @property
    def direction(self) -> str:
        return self.cfg.objective.direction

    def better(self, a: float, b: float) -> bool:
        """True when objective `a` is better than `b` in this lab's direction."""
        return ratchet.better(self.direction, a, b)

    @property
    def threshold(self) -> float | None:
        """The ratchet's keep threshold, max(min_delta, k·σ) over the baseline's noise."""
        if self.baseline is None:
            return None
        return ratchet.threshold(self.cfg, self.baseline["sigma"])

    def trial(self, trial_id: int) -> dict[str, Any] | None:
        return next((t for t in self.trials if t["id"] == trial_id), None)

    def succeeded(self) -> list[dict[str, Any]]:
        """Succeeded trials with a finite objective, in id order; finish-up's test run is
        left out (its validation figure repeats a seed of the final pick)."""
        return [
            t
            for t in self.trials
            if t["status"] == "succeeded" and finite(t["objective"]) and t["kind"] != TEST_KIND
        ]

    def failures(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] in FAILED]

    def rejections(self) -> list[dict[str, Any]]:
        """Decisions the gate turned into waits."""
        return [d for d in self.decisions if not d["accepted"]]

    def kept(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["verdict"] == "kept"]

    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def load(lab: Path, cfg: Config, night_id: str | None = None) -> Night:
    """Read the lab's store; FileNotFoundError (naming the file) when the lab never ran."""
    db = LabPaths(lab).db
    with closing(read.connect(db)) as conn:
        meta = queries.meta(conn)
        night = night_id or meta.get("night_id")
        if not night:
            raise ReportError(
                f"{db} has no night id (meta key `night_id`): the night never began; run "
                "`nightlab run` first or pass night_id explicitly"
            )
        runs = queries.runs(conn)
        cycles = queries.cycles(conn)
        decisions = queries.decisions(conn)
        trials = queries.trials(conn)
        for t in trials:
            if not finite(t["objective"]):
                t["objective"] = None
        events = queries.events(conn, EVENT_KINDS)
        return Night(
            lab=Path(lab),
            cfg=cfg,
            night_id=str(night),
            meta=meta,
            runs=runs,
            cycles=cycles,
            decisions=decisions,
            trials=trials,
            mentor=[e for e in events if e["kind"] in MENTOR_KINDS],
            mentor_errors=[e for e in events if e["kind"] == "mentor_error"],
            ratchet={e["trial_id"]: e["data"] for e in events if e["kind"] == "ratchet"},
            test_notes=[e for e in events if e["kind"] in TEST_NOTES],
            test_event=next((e for e in reversed(events) if e["kind"] == "test_metric"), None),
            baseline=read.baseline(conn),
            best=read.best(conn),
            usage=read.usage(conn),
            storyline=[c["summary"] for c in cycles if c["summary"]],
        )


def test_figure(night: Night, given: dict[str, Any] | None) -> dict[str, Any] | None:
    """The held-out test figure for the final pick: `given`, else the newest `test_metric`
    event; checked to name a trial of this night and carry a metric and a number."""
    source = "argument"
    if given is None and night.test_event is not None:
        given, source = dict(night.test_event["data"]), "test_metric event"
        if given.get("trial") is None:
            given["trial"] = night.test_event["trial_id"]
    if given is None:
        return None
    missing = [k for k in ("trial", "metric", "value") if given.get(k) is None]
    if missing:
        raise ReportError(
            f"the test figure ({source}) lacks {', '.join(missing)}: give "
            '{"trial": ID, "metric": "test_acc", "value": 0.95}'
        )
    trial = int(given["trial"])
    if night.trial(trial) is None:
        raise ReportError(f"the test figure ({source}) names trial {trial}, not in this night")
    if not finite(given["value"]):
        raise ReportError(f"the test figure ({source}) value {given['value']!r} is not a number")
    return {"trial": trial, "metric": str(given["metric"]), "value": float(given["value"])}
