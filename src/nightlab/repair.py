"""Auto-repair: one recovery pass per failed trial (see SPEC "Auto-repair").

`recover` decides and applies the repair; the loop runs the repaired trial again once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import Config


@dataclass
class Retry:
    """Run the failed trial once more, with these parameters, because of `note`."""

    params: dict[str, Any]
    note: str


def recover(
    cfg: Config,
    lab: Path,
    state: Path,
    trial: Any,
    outcome: Any,
    log: Callable[..., None],
) -> Retry | None:
    """One recovery pass for a failed trial; None when there is nothing to repair."""
    return None
