"""The heartbeat: a thread that keeps the run's heartbeat fresh while trials run, and
hears what reaches a running loop through the store — `nightlab stop` (a graceful stop),
`nightlab finishup` (a new or changed request) and `nightlab extend` (a later deadline) —
within a beat."""

from __future__ import annotations

import logging
import threading
import time

from nightlab.loop.finishup import Finisher
from nightlab.loop.night import Night

LOG = logging.getLogger(__name__)
HEARTBEAT_S = 2.0


class Heartbeat:
    def __init__(self, night: Night, finisher: Finisher, graceful: threading.Event) -> None:
        self.night, self.finisher, self.graceful = night, finisher, graceful
        self.done = threading.Event()  # the run is closed: the heartbeat ends

    def start(self) -> None:
        threading.Thread(target=self._beat, daemon=True, name="nightlab-heartbeat").start()

    def stop(self) -> None:
        self.done.set()

    def _beat(self) -> None:
        while not self.done.is_set():
            try:
                stop, deadline = self.night.journal.beat()
                if stop:
                    self.graceful.set()
                self._deadline(deadline)
                self.finisher.refresh()
            except Exception as exc:  # keep beating; the main thread reports store failures
                LOG.error("heartbeat failed: %s", exc)
            self.done.wait(HEARTBEAT_S)

    def _deadline(self, deadline: float | None) -> None:
        """Take a deadline `nightlab extend` moved (the budget and the workers read
        `night.deadline`), and say so once."""
        old = self.night.deadline
        if deadline is None or deadline == old:
            return
        self.night.deadline = deadline
        was = "no time limit" if old is None else f"was {_clock(old)}"
        self.night.report(f"hours extended: the night now ends {_clock(deadline)} ({was})")


def _clock(ts: float) -> str:
    return time.strftime("%a %H:%M:%S", time.localtime(ts))
