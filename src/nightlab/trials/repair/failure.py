"""A failed trial under repair: what the passes read (its log, its parameters, the lab's
`[repair]` settings) and how they report (`auto_repair` events)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.store import files

EVENT = "auto_repair"
STDERR_BYTES = 65536  # how much of the end of stderr.log is read
TAIL_CHARS = 2000  # output kept in an event


@dataclass
class Retry:
    """Run the failed trial once more, with these parameters, because of `note`."""

    params: dict[str, Any]
    note: str


class Failure:
    """One failed trial, as every repair pass sees it."""

    def __init__(
        self,
        cfg: Config,
        lab: Path,
        state: Path,
        trial: Any,
        outcome: Any,
        log: Callable[..., None],
    ) -> None:
        self.rc = cfg.repair
        self.cfg = cfg
        self.lab = lab
        self.state = state
        self.trial = trial
        self.log = log
        stderr = _read_tail(state / "trials" / str(trial.id) / "stderr.log")
        # stderr first; the outcome's tail (stderr and stdout) when stderr says nothing
        self.texts = [t for t in (stderr, getattr(outcome, "log_tail", None) or "") if t]

    def event(self, action: str, ok: bool, message: str, **data: Any) -> None:
        self.log(EVENT, action=action, ok=ok, message=message, **data)


def toml_key(name: str) -> str:
    """`name` as a key in nightlab.toml (quoted unless bare)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def write_json(path: Path, data: Any) -> None:
    files.write_json(path, data, newline=True)


def _read_tail(path: Path) -> str:
    return files.tail(path, max_bytes=STDERR_BYTES)
