"""Everything a report needs, read once from `.nightlab/state.db` (stdlib sqlite3, read-only).

The queries live in the store (`nightlab.store.read`, `nightlab.store.queries`).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nightlab import UserError, ratchet
from nightlab.config import Config
from nightlab.ratchet import finite
from nightlab.store import queries, read
from nightlab.store.kinds import FAILED, RATCHET, Kind
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
    ratchet: dict[int, dict[str, Any]]  # trial id → its last ratchet event (verdict, figures)
    test_notes: list[dict[str, Any]]  # why no held-out figure came (skipped, missing)
    baseline: dict[str, Any] | None
    best: dict[str, Any] | None
    usage: dict[str, Any]
    storyline: list[str] = field(default_factory=list)
    noise: ratchet.Noise = field(default_factory=lambda: ratchet.Noise(0.0, 0.0, 0))
    """The pooled noise as of the end of the night (every candidate that ran twice)."""

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

    def pruned(self) -> list[dict[str, Any]]:
        """Trials `[pruning]` stopped early: neither failed nor kept (never a candidate)."""
        return [t for t in self.trials if t["status"] == "pruned"]

    def rejections(self) -> list[dict[str, Any]]:
        """Decisions the gate turned into waits."""
        return [d for d in self.decisions if not d["accepted"]]

    def kept(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["verdict"] == "kept"]

    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    # the ratchet's record ----------------------------------------------------------------
    def with_verdict(self, *verdicts: str) -> list[dict[str, Any]]:
        """Trials whose verdict is one of `verdicts`, in id order."""
        return [t for t in self.trials if t["verdict"] in verdicts]

    def screened(self) -> list[dict[str, Any]]:
        """Trials that passed the screen and still await their confirmation's verdict (the
        night stopped first)."""
        return self.with_verdict("screened")

    def false_keeps_avoided(self) -> list[dict[str, Any]]:
        """Challengers that passed the screen but not their confirmation (`not_confirmed`):
        a keep on one lucky run would have moved the base to each of them."""
        return self.with_verdict("not_confirmed")

    def sigma_over_night(self) -> list[dict[str, Any]]:
        """The σ every verdict was made with, in the order they were made: a screen at its
        trial's id, a confirmation at its last confirmation run's id (`at`); `stage`,
        `trial`, `sigma`, `df`. Verdicts made before σ was measured (df 0) are left out."""
        points = []
        for t in self.trials:
            j = t.get("judgement") or {}
            screen = j.get("screen") if j.get("stage") == "confirm" else j
            if isinstance(screen, dict) and screen.get("df") and finite(screen.get("sigma")):
                points.append({"at": t["id"], "trial": t["id"], "stage": "screen",
                               "sigma": screen["sigma"], "df": screen["df"]})  # fmt: skip
            if j.get("stage") == "confirm" and j.get("df") and finite(j.get("sigma")):
                at = max(j.get("runs") or [t["id"]])
                points.append({"at": at, "trial": t["id"], "stage": "confirm",
                               "sigma": j["sigma"], "df": j["df"]})  # fmt: skip
        return sorted(points, key=lambda p: (p["at"], p["stage"] == "screen"))

    def confirmation_cost(self) -> dict[str, Any]:
        """Trial-seconds spent on confirmation runs: the ratchet's (a screened trial's runs
        on new seeds, and the best's re-runs beside them) and, counted apart, finish-up's."""
        workers = {d["id"]: d["worker"] for d in self.decisions}
        ratchet_s = finishup_s = total = 0.0
        ratchet_n = finishup_n = 0
        for t in self.trials:
            wall = t["wall_s"] if finite(t["wall_s"]) else 0.0
            total += wall
            if t["kind"] != "confirm":
                continue
            if workers.get(t["decision_id"]) == RATCHET:
                ratchet_s, ratchet_n = ratchet_s + wall, ratchet_n + 1
            else:
                finishup_s, finishup_n = finishup_s + wall, finishup_n + 1
        return {
            "ratchet_s": ratchet_s, "ratchet_runs": ratchet_n,
            "finishup_s": finishup_s, "finishup_runs": finishup_n,
            "total_s": total, "share": ratchet_s / total if total > 0 else None,
        }  # fmt: skip


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
            judgement = t.get("judgement")
            if not isinstance(judgement, dict):
                judgement = queries.decode(judgement, None)
            t["judgement"] = judgement if isinstance(judgement, dict) else None
            t.setdefault("confirms", None)
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
            noise=read.noise(conn, cfg.ratchet.sigma_confidence),
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
