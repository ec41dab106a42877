"""Admission of a decision: the gate (agents/gate.py), then the checks that need git and the
store. Only regular files are edited (the gate refuses a symlink, folder or submodule of the
base), the edits become one commit on top of the base, and a run must not repeat a trial that
already ran."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.agents.gate import GateResult, check
from nightlab.config import Config
from nightlab.store import queries, read
from nightlab.trials import protect, smoke, training_spec
from nightlab.trials.workspace import Workspace


def admit(
    decision: Decision,
    cfg: Config,
    ws: Workspace,
    db: Path,
    base: str,
    base_params: dict[str, Any],
    tick: Callable[[], bool] = lambda: True,
) -> tuple[GateResult, str]:
    """(the gate's result, the commit to run: `base`, or a new one holding the edits)."""
    if decision.action == "run" and (hit := protect.edited(
            [e.file for e in decision.edits], cfg.trial.protected)):  # fmt: skip
        reasons = [f"{protect.REASON}: {f} is protected ([trial] protected)" for f in hit]
        return GateResult(False, reasons), base
    gate = check(
        decision, cfg,
        read=lambda p: ws.read(base, p) if ws.exists(base, p) else None,
        mode=lambda p: ws.mode(base, p),
    )  # fmt: skip
    if not gate.accepted or decision.action != "run":
        return gate, base
    commit = base
    spec = cfg.trial.spec
    if spec and spec in gate.files:  # the spec runs (and is committed) normalised
        normalized = training_spec.normalize_text(cfg, gate.files[spec])
        if normalized.errors:
            return GateResult(False, normalized.errors), base
        gate.files[spec] = normalized.text()
        gate.notes += [f"{spec}: {note}" for note in normalized.notes]
    if gate.files:
        message = f"nightlab: {decision.hypothesis or decision.rationale}"[:200]
        commit = ws.commit_files(base, gate.files, message)
        if reasons := smoke.vet(cfg, ws.lab, ws, commit, list(gate.files), tick):
            return GateResult(False, reasons), base
    params = cfg.normalize({**base_params, **decision.params})
    if (other := twin(ws, db, commit, params)) is not None:
        reason = f"the same code and parameters as trial {other} already ran: nothing new"
        return GateResult(False, [reason]), base
    return gate, commit


def twin(ws: Workspace, db: Path, commit: str, params: dict[str, Any]) -> int | None:
    """A trial that already ran this code (the same tree) with these parameters."""
    with read.connect(db) as conn:
        rows = queries.ran_with_params(conn, params)  # not those cut short by nightlab
    tree = None
    for trial, other in rows:
        if other == commit:
            return trial
        tree = tree or ws.git("rev-parse", f"{commit}^{{tree}}")
        if ws.git("rev-parse", f"{other}^{{tree}}") == tree:
            return trial
    return None
