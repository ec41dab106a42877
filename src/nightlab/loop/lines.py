"""The night's human lines ("trial 3 started on slot 0: …"): records on the `nightlab.loop`
logger, INFO for what happened and WARNING for what went wrong, with secrets redacted.

A library user sees them with standard logging (`logging.basicConfig(level=logging.INFO)`);
the CLI installs its own handler (lab/cli_common.py). A `report` callback, the API's older
way, still receives each line too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nightlab.store.redact import redact

LOG = logging.getLogger("nightlab.loop")


class Lines:
    """Called with a line: an INFO record; `.warning(line)`: a WARNING record."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self._report = report

    def __call__(self, line: str) -> None:
        self._emit(logging.INFO, line)

    def warning(self, line: str) -> None:
        self._emit(logging.WARNING, line)

    def _emit(self, level: int, line: str) -> None:
        line = redact(line)
        LOG.log(level, line)
        if self._report is not None:
            self._report(line)
