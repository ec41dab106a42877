"""`.nightlab/repair/ledger.json`: every install auto-repair tried in this lab, so that none
is tried twice for the same interpreter."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nightlab.trials.repair.failure import write_json


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
            self.installs: list[dict[str, Any]] = list(data.get("installs", []))
        except (OSError, ValueError, AttributeError):
            self.installs = []

    def find(
        self, python: str, *, module: str | None = None, requirement: str | None = None
    ) -> dict[str, Any] | None:
        """The latest install for this interpreter of `module` (successful ones only) or
        of `requirement` (any outcome)."""
        for entry in reversed(self.installs):
            if entry.get("python") != python:
                continue
            if module is not None and entry.get("module") == module and entry.get("ok"):
                return entry
            if requirement is not None and entry.get("requirement") == requirement:
                return entry
        return None

    def add(
        self, python: str, module: str, requirement: str, source: str, ok: bool, trial: int | None
    ) -> None:
        self.installs.append(
            {
                "python": python,
                "module": module,
                "requirement": requirement,
                "source": source,
                "ok": ok,
                "trial": trial,
                "ts": time.time(),
            }
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"installs": self.installs})
