"""Admission of a decision: the gate (agents/gate.py), then the checks that need git and the
store. Only regular files are edited (the gate refuses a symlink, folder or submodule of the
base), the edits become one commit on top of the base, and a run must not repeat a trial that
ran or is running.

A decision planned on an older best (a slow worker thinks while trials run, and one of them
may be kept meanwhile) is judged where it was made: its edits are applied to the base it was
planned on, then carried onto the current best by a three-way merge (loop/rebase.py), so a
kept change is never undone by a plan that did not know it. A plan whose change conflicts
with the best's, or that the best already holds, is refused and asked again on the new best.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.agents.gate import GateResult, check
from nightlab.config import Config
from nightlab.loop.rebase import Carried, carry
from nightlab.store import queries, read
from nightlab.trials import protect, smoke, training_spec
from nightlab.trials.workspace import Workspace

TWIN_BATCH = 500  # commits per `git rev-parse` of the twin check


@dataclass
class Admission:
    """The gate's result and the commit to run: `base`, or a new one holding the edits."""

    gate: GateResult
    commit: str
    planned_on: str | None = None  # set when the plan was made on another base than `base`
    planned: str | None = None  # its edits as a commit on `planned_on`
    carried: Carried | None = None  # how they were carried onto `base`

    @property
    def rebased(self) -> bool:
        """The edits were made on an older best and merged onto the current one."""
        return self.carried is not None and self.gate.accepted

    @property
    def reask(self) -> bool:
        """Refused only for being planned on an older best: ask again on the current one."""
        return self.carried is not None and not self.carried.clean and not self.gate.accepted


def admit(
    decision: Decision,
    cfg: Config,
    ws: Workspace,
    db: Path,
    base: str,
    base_params: dict[str, Any],
    tick: Callable[[], bool] = lambda: True,
    planned_on: str | None = None,
) -> Admission:
    """Admit `decision` to run on `base` (the current best's commit); `planned_on`: the
    base it was planned on, when that is another (see the module's docstring)."""
    if decision.action == "run" and (hit := protect.edited(
            [e.file for e in decision.edits], cfg.trial.protected)):  # fmt: skip
        reasons = [f"{protect.REASON}: {f} is protected ([trial] protected)" for f in hit]
        return Admission(GateResult(False, reasons), base)
    moved = None
    if planned_on and planned_on != base and decision.action == "run" and decision.edits:
        on_plan = _gate(decision, cfg, ws, planned_on)
        if on_plan.accepted and on_plan.files:
            moved = _carry(decision, cfg, ws, planned_on, base, on_plan)
            if not moved.gate.accepted:
                return moved
        # edits that do not apply where they were planned are judged on the best as they
        # are (a search text the worker read from the newer code)
    gate = moved.gate if moved else _gate(decision, cfg, ws, base)
    if not gate.accepted or decision.action != "run":
        return Admission(gate, base)
    commit = base
    if gate.files:
        message = f"nightlab: {decision.hypothesis or decision.rationale}"[:200]
        commit = ws.commit_files(base, gate.files, message)
        if reasons := smoke.vet(cfg, ws.lab, ws, commit, list(gate.files), tick):
            return Admission(GateResult(False, reasons), base)
    params = cfg.normalize({**base_params, **decision.params})
    if (other := twin(ws, db, commit, params)) is not None:
        trial, running = other
        when = "is running now" if running else "already ran"
        reason = f"the same code and parameters as trial {trial} {when}: nothing new"
        return Admission(GateResult(False, [reason]), base)
    if moved is not None:
        return Admission(gate, commit, planned_on, moved.planned, moved.carried)
    return Admission(gate, commit)


def _gate(decision: Decision, cfg: Config, ws: Workspace, base: str) -> GateResult:
    """The gate on `base`; the training spec, if edited, as it will run (normalised)."""
    gate = check(
        decision, cfg,
        read=lambda p: ws.read(base, p) if ws.exists(base, p) else None,
        mode=lambda p: ws.mode(base, p),
    )  # fmt: skip
    if gate.accepted and decision.action == "run":
        _normalize_spec(cfg, gate)
    return gate


def _normalize_spec(cfg: Config, gate: GateResult) -> None:
    """The spec runs (and is committed) normalised; a spec that cannot be refuses the gate."""
    spec = cfg.trial.spec
    if not (spec and spec in gate.files):
        return
    normalized = training_spec.normalize_text(cfg, gate.files[spec])
    if normalized.errors:
        gate.accepted, gate.reasons, gate.files = False, normalized.errors, {}
        return
    gate.files[spec] = normalized.text()
    gate.notes += [f"{spec}: {note}" for note in normalized.notes if note not in gate.notes]


def _carry(
    decision: Decision, cfg: Config, ws: Workspace, planned_on: str, base: str, gate: GateResult
) -> Admission:
    """The plan's files, accepted on `planned_on`, merged onto `base`: an accepted gate
    holding the merged files, or a refusal to ask again."""
    message = f"nightlab: {decision.hypothesis or decision.rationale}"[:200]
    planned = ws.commit_files(planned_on, gate.files, message)
    carried = carry(ws, planned_on, base, gate.files)
    where = f"planned on {planned_on[:12]}, the best is now {base[:12]}"
    if carried.conflicts:
        reasons = [f"{where}: its change of {', '.join(carried.conflicts)} conflicts with the "
                   "best's (asked again on the new best)"]  # fmt: skip
        return Admission(GateResult(False, reasons), base, planned_on, planned, carried)
    if carried.contained and decision.params:  # the code is there, its params are not
        note = f"{where}: its change is already in the best; its params run on it"
        return Admission(GateResult(True, [], {}, [*gate.notes, note]), base, planned_on,
                         planned, carried)  # fmt: skip
    if carried.contained:
        reasons = [f"{where}: its change is already in the best: nothing new (asked again)"]
        return Admission(GateResult(False, reasons), base, planned_on, planned, carried)
    merged = GateResult(True, [], carried.files, list(gate.notes))
    _normalize_spec(cfg, merged)  # a merge of two normalised specs, normalised again
    return Admission(merged, base, planned_on, planned, carried)


def twin(ws: Workspace, db: Path, commit: str, params: dict[str, Any]) -> tuple[int, bool] | None:
    """(id, still running) of a trial that ran or is running this code (the same tree)
    with these parameters."""
    with read.connect(db) as conn:
        rows = queries.trials_with_params(conn, params)  # not those cut short by nightlab
    if not rows:
        return None
    # one git call per TWIN_BATCH commits: a coding agent changes code, not params, so
    # hundreds of trials may share these params
    others = sorted({other for _, other, _ in rows if other != commit})
    trees = {commit: _trees(ws, [commit])[0]}
    for i in range(0, len(others), TWIN_BATCH):
        chunk = others[i : i + TWIN_BATCH]
        trees.update(zip(chunk, _trees(ws, chunk), strict=True))
    for trial, other, status in rows:
        if trees[other] == trees[commit]:
            return trial, status == "running"
    return None


def _trees(ws: Workspace, commits: list[str]) -> list[str]:
    out = ws.git("rev-parse", *(f"{c}^{{tree}}" for c in commits)) or ""
    return out.split()
