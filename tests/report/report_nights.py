"""Nights for the report tests: real ones run by the loop, and hand-built stores for the
cases a real night cannot produce cheaply (confirmation runs over seeds, long nights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.store.db import Cycle, Decision, Event, Meta, Run, Store, Trial

from conftest import TRIAL, build_lab, make_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["Summary", "Approach", "Results", "Challenges", "Recommendations"]


def real_lab(root: Path, decisions: list[dict], max_trials: int = 20) -> Path:
    """A lab like conftest's `make_lab(decisions=...)`, run to its end by the real loop."""
    from nightlab import Lab

    lab = build_lab(root / "lab", decisions=decisions, max_trials=max_trials, confirm_runs=2)
    Lab(lab).run(report=lambda line: None)
    return lab


# The tiny lab with luck: `lucky` adds to the score on seed 0 — the seed every worker
# trial (its selection run) runs with — and only a hundredth of it on the confirmation runs'
# new seeds (enough to beat the best's mean, so that both confirmation runs are made).
LUCKY_TRIAL = TRIAL.replace(
    'score = 1.0 + p.get("boost", 0.0)',
    'score = p.get("lucky", 0.0) * (1 if seed == 0 else 0.01) + 1.0 + p.get("boost", 0.0)',
)
LUCKY_KNOB = "\n[search.lucky]\nlow = 0.0\nhigh = 1.0\ndefault = 0.0\n"
LUCKY_DECISIONS = [
    {"action": "run", "rationale": "lucky on its selection seed only", "params": {"lucky": 1.0},
     "hypothesis": "luck lifts the score", "dimension": "optimization"},
    {"action": "run", "rationale": "a real improvement of +0.2", "params": {"boost": 0.2},
     "hypothesis": "boost lifts the score", "dimension": "optimization"},
    {"action": "run", "rationale": "a hair of luck on the best",
     "params": {"boost": 0.2, "lucky": 0.02}, "hypothesis": "a nudge", "dimension": "optimization"},
]  # fmt: skip


def lucky_lab(root: Path) -> Path:
    """The night of `LUCKY_DECISIONS`, run by the real loop: a lucky trial that passes the
    screen and fails its confirmation, a real gain kept, a lucky single run discarded."""
    from nightlab import Lab

    assert LUCKY_TRIAL != TRIAL
    lab = build_lab(root / "lab", decisions=LUCKY_DECISIONS, trial=LUCKY_TRIAL,
                    toml_extra=LUCKY_KNOB, max_trials=20, confirm_runs=2)  # fmt: skip
    Lab(lab).run(report=lambda line: None)
    return lab


def config(direction: str = "maximize", metric: str = "score", **extra: Any) -> Config:
    """The hand-built nights' config: knobs `lr` and `depth`."""
    search = {
        "lr": {"low": 1e-4, "high": 1e-1, "log": True, "default": 1e-3},
        "depth": {"low": 1, "high": 8, "default": 2},
    }
    return make_config(metric, direction, name="hand", search=search, **extra)


def trial(
    id: int,
    objective: float | None,
    *,
    kind: str = "trial",
    status: str = "succeeded",
    verdict: str | None = "discarded",
    seed: int = 0,
    commit: str = "c0",
    params: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "objective": objective,
        "kind": kind,
        "status": status,
        "verdict": verdict,
        "seed": seed,
        "commit": commit,
        "params": params or {"lr": 1e-3, "depth": 2},
        **extra,
    }


def judgement(
    verdict: str,
    value: float,
    best_mean: float,
    *,
    stage: str = "screen",
    n: int = 1,
    best_trial: int = 1,
    best_n: int = 3,
    sigma: float = 0.02,
    df: int = 2,
    threshold: float = 0.03,
    z: float = 1.0,
    direction: str = "maximize",
    **extra: Any,
) -> dict[str, Any]:
    """A ratchet record as the loop writes it (`Verdict.record()`, plus `runs`/`screen` for
    a confirmation's); improvement is `value` against `best_mean` in `direction`."""
    from nightlab.ratchet import Verdict, gain

    v = Verdict(verdict, stage, gain(direction, value, best_mean), threshold, sigma, df,
                best_trial, best_mean, best_n, value, n, z)  # fmt: skip
    return {**v.record(), **extra}


def confirmed(
    id: int,
    selection: float,
    runs: list[float],
    best_mean: float,
    *,
    verdict: str = "kept",
    commit: str = "c0",
    params: dict[str, Any] | None = None,
    best_trial: int = 1,
    best_n: int = 3,
    direction: str = "maximize",
    **extra: Any,
) -> list[dict[str, Any]]:
    """A worker's trial `id` that passed the screen on its `selection` run, then its
    confirmation runs (ids `id+1`…, seeds 1000…) and the verdict they earned, with the
    judgement the loop would have recorded."""
    import statistics

    params = params or {"lr": 1e-3, "depth": 2}
    ids = [id + 1 + i for i in range(len(runs))]
    where = {"best_trial": best_trial, "best_n": best_n, "direction": direction}
    screen = judgement("screened", selection, best_mean, **where)
    mean = statistics.fmean(runs)
    record = judgement(verdict, mean, best_mean, stage="confirm", n=len(runs), z=2.0,
                       runs=ids, screen=screen, **where)  # fmt: skip
    head = trial(id, selection, verdict=verdict, commit=commit, params=params,
                 judgement=record, **extra)  # fmt: skip
    return [head] + [
        trial(
            i,
            v,
            kind="confirm",
            verdict="confirmation",
            seed=1000 + k,
            commit=commit,
            params=params,
            confirms=id,
        )  # fmt: skip
        for k, (i, v) in enumerate(zip(ids, runs, strict=True))
    ]


def baseline(values: list[float], start_id: int = 1) -> list[dict[str, Any]]:
    return [
        trial(start_id + i, v, kind="baseline", verdict="baseline", seed=i)
        for i, v in enumerate(values)
    ]


def hand_store(
    lab: Path,
    trials: list[dict[str, Any]],
    *,
    events: list[tuple[str, dict[str, Any]]] = (),
    rejected: list[str] = (),
    run_state: str = "finished",
    end_reason: str = "max_trials=20 reached",
    night_id: str = "hand-night",
) -> Path:
    """A state.db written through the real schema (Alembic), rows as given; one cycle and
    decision per trial (its worker: `worker`, else as the loop names it: `baseline`,
    `ratchet` for a confirmation run, `search`), then one rejected decision per reason in
    `rejected`."""
    lab.mkdir(parents=True, exist_ok=True)
    store = Store(lab / ".nightlab" / "state.db")
    store.migrate()
    t0 = 1_800_000_000.0
    try:
        with store.tx() as s:
            s.add(Meta(key="night_id", value=night_id))
            run = Run(lab=str(lab), pid=1, host="h", state=run_state, started_at=t0,
                      heartbeat_at=t0, ended_at=t0 + 3600, end_reason=end_reason,
                      options={"worker": "search", "slots": 1})  # fmt: skip
            s.add(run)
            s.flush()
            for n, spec in enumerate(trials):
                spec = dict(spec)
                at = t0 + 60 * (n + 1)
                cycle = Cycle(run_id=run.id, trace_id=f"tr{n:04d}", started_at=at,
                              ended_at=at + 30, action="run",
                              summary=f"[tr{n:04d}] trial {spec['id']} {spec['status']} "
                              f"score={spec['objective']} → {spec['verdict']}")  # fmt: skip
                s.add(cycle)
                s.flush()
                who = {"baseline": "baseline", "confirm": "ratchet"}.get(spec["kind"], "search")
                dec = Decision(cycle_id=cycle.id, worker=spec.pop("worker", who), action="run",
                               accepted=True, reasons=[], body={"action": "run"})  # fmt: skip
                s.add(dec)
                s.flush()
                s.add(
                    Trial(
                        run_id=run.id,
                        cycle_id=cycle.id,
                        decision_id=dec.id,
                        slot=0,
                        base_commit="c0",
                        started_at=at,
                        ended_at=at + 30,
                        judged_at=at + 30,
                        wall_s=spec.pop("wall_s", 30.0),
                        metrics={},
                        hypothesis=spec.pop("hypothesis", ""),
                        **spec,
                    )  # fmt: skip
                )
            for n, reason in enumerate(rejected):
                at = t0 + 60 * (len(trials) + n + 1)
                line = f"[rj{n:04d}] wait — gate rejected: {reason}"
                cycle = Cycle(run_id=run.id, trace_id=f"rj{n:04d}", started_at=at, ended_at=at,
                              action="wait", summary=line)  # fmt: skip
                s.add(cycle)
                s.flush()
                s.add(Decision(cycle_id=cycle.id, worker="search", action="run", accepted=False,
                               reasons=[reason], body={"action": "run"}))  # fmt: skip
            for n, (kind, data) in enumerate(events):
                s.add(Event(ts=t0 + 61 * (n + 1), run_id=run.id, kind=kind,
                            trial_id=data.get("trial"), data=data))  # fmt: skip
    finally:
        store.close()
    return lab


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 1000


def section(text: str, title: str) -> str:
    """The body of a `## title` section of a Markdown report."""
    body = text.split(f"## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]
