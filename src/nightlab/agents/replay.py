"""The `replay:FILE` worker: decisions read from a JSON-lines file, one per cycle (tests,
demos, reproducing a night). A resumed lab continues after the decisions already made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nightlab.agents.decision import Decision
from nightlab.agents.worker import BaseWorker


class ReplayError(Exception):
    pass


class ReplayWorker(BaseWorker):
    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        if not path.is_file():
            raise ReplayError(
                f"{name}: {path} does not exist; write one decision (JSON) per line there"
            )
        self.decisions: list[Decision] = []
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReplayError(f"{name}: {path} cannot be read as UTF-8 text: {exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                self.decisions.append(Decision.model_validate(json.loads(line)))
            except (ValueError, ValidationError, RecursionError) as exc:
                raise ReplayError(f"{path}:{n}: not a valid decision: {exc}") from None
        self.position = 0

    def resume(self, finished: list[Any], decided: int) -> None:
        self.position = decided

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.position >= len(self.decisions):
            return Decision(action="stop", rationale=f"all {len(self.decisions)} replayed")
        self.position += 1
        return self.decisions[self.position - 1]

    def observe(self, trial: Any) -> None:
        pass
