"""The heartbeat: a thread that keeps the run's heartbeat fresh while trials run, and
hears what reaches a running loop through the store — `nightlab stop` (a graceful stop)
and `nightlab finishup` (a new or changed request) — within a beat."""

from __future__ import annotations

import sys
import threading

from nightlab.loop.finishup import Finisher
from nightlab.loop.journal import Journal

HEARTBEAT_S = 2.0


class Heartbeat:
    def __init__(self, journal: Journal, finisher: Finisher, graceful: threading.Event) -> None:
        self.journal, self.finisher, self.graceful = journal, finisher, graceful
        self.done = threading.Event()  # the run is closed: the heartbeat ends

    def start(self) -> None:
        threading.Thread(target=self._beat, daemon=True, name="nightlab-heartbeat").start()

    def stop(self) -> None:
        self.done.set()

    def _beat(self) -> None:
        while not self.done.is_set():
            try:
                if self.journal.beat():
                    self.graceful.set()
                self.finisher.refresh()
            except Exception as exc:  # keep beating; the main thread reports store failures
                print(f"nightlab: heartbeat failed: {exc}", file=sys.stderr)
            self.done.wait(HEARTBEAT_S)
