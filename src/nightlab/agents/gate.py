"""The quality gate: a decision runs whole or not at all. A rejected decision becomes a
`wait` with its reasons recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nightlab.agents.decision import Decision
from nightlab.config import Config, matches

MIN_RATIONALE = 12
TRIVIAL = {"try", "test", "run", "n/a", "na", "none", "because", "todo", "idk"}


@dataclass
class GateResult:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # new content of edited files
    notes: list[str] = field(default_factory=list)  # what admission changed (spec clamps)


def check(decision: Decision, cfg: Config, read: Callable[[str], str | None]) -> GateResult:
    """Judge `decision`; `read(path)` gives an editable file's content at the base (or None)."""
    reasons: list[str] = []
    text = decision.rationale.strip()
    if len(text) < MIN_RATIONALE or text.lower().strip(".!") in TRIVIAL:
        reasons.append(f"rationale too thin ({text!r}): say why this, now")
    files: dict[str, str] = {}
    if decision.action == "run":
        reasons += cfg.param_violations(decision.params)
        for edit in decision.edits:
            if not matches(edit.file, cfg.editable_files):
                reasons.append(f"{edit.file!r} is not editable (allowed: {cfg.editable_files})")
                continue
            current = files.get(edit.file)
            if current is None:
                current = read(edit.file)
            if not edit.search:
                files[edit.file] = edit.replace
            elif current is None:
                reasons.append(f"{edit.file!r} does not exist; create it with an empty search")
            elif (n := current.count(edit.search)) != 1:
                where = "not found" if n == 0 else f"found {n} times"
                reasons.append(f"edit of {edit.file!r}: search text {where} (must match once)")
            else:
                files[edit.file] = current.replace(edit.search, edit.replace, 1)
    elif decision.params or decision.edits:
        reasons.append(f"action {decision.action!r} carries params/edits; only `run` may")
    return GateResult(accepted=not reasons, reasons=reasons, files={} if reasons else files)
