"""The loop's side of auto-repair (trials/repair/ does the repairing): each failed trial's one
recovery pass runs on its own thread, one at a time, so the other slots stay watched while
pip or git works; what it did is stored by the loop's thread, and a repaired trial waits
here for the next free slot.

Crash safety: `repair_started` is stored before a pass begins and `repair_done` after it,
with `repair_pending` (the retry) in the same transaction; a new loop retries what was
pending and repairs again what was cut short.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.config import Config
from nightlab.loop.journal import Journal
from nightlab.store import files, history
from nightlab.store.db import Store, Trial
from nightlab.store.paths import LabPaths
from nightlab.trials import repair


class Repairs:
    def __init__(
        self,
        cfg: Config,
        lab: Path,
        state: Path,
        store: Store,
        journal: Journal,
        report: Callable[[str], None],
    ) -> None:
        self.cfg, self.lab, self.state = cfg, lab, state
        self.store, self.journal, self.report = store, journal, report
        self.run_id: int | None = None
        self.retries: list[tuple[Trial, repair.Retry]] = []  # repaired, waiting for a slot
        self.running: set[int] = set()  # trials whose repair is under way
        self._done: queue.SimpleQueue[tuple[Trial, Any, list]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one at a time: the ledger never installs twice

    @property
    def busy(self) -> bool:
        """A repaired trial waits for a slot, or a repair is under way."""
        return bool(self.retries or self.running)

    def resume(self, run_id: int) -> None:
        """At a loop's start: the retries a dead loop left, and its unfinished repairs."""
        self.run_id = run_id
        self.retries = [
            (row, repair.Retry(data["params"], data["note"]))
            for row, data in history.pending_retries(self.store)
        ]
        for row in history.unfinished_repairs(self.store):
            log = files.trial_logs_tail(LabPaths.of_state(self.state).trial(row.id))
            self.start(row, SimpleNamespace(status=row.status, log_tail=log), again=True)

    def start(self, row: Trial, out: Any, again: bool = False) -> None:
        """One repair pass for a failed trial (not for a retry, nor twice unless the first
        was cut short: `again`)."""
        if not self.cfg.repair.enabled or history.retry_links(self.store, row.id) and not again:
            return
        events: list[tuple[str, dict[str, Any]]] = []

        def work() -> None:
            retry = None
            try:
                with self._lock:
                    retry = repair.recover(
                        self.cfg, self.lab, self.state, row, out,
                        lambda kind, **data: events.append((kind, data)),
                    )  # fmt: skip
            finally:
                self._done.put((row, retry, events))

        with self.store.tx() as s:
            Store.event(s, "repair_started", run_id=self.run_id, trial_id=row.id)
        self.running.add(row.id)
        threading.Thread(target=work, daemon=True, name=f"nightlab-repair-{row.id}").start()

    def collect(self) -> None:
        """Store what finished repairs did; queue their retries (called by the loop)."""
        while not self._done.empty():
            row, retry, events = self._done.get()
            self.running.discard(row.id)
            with self.store.tx() as s:
                for kind, data in events:
                    Store.event(s, kind, run_id=self.run_id, trial_id=row.id, **data)
                Store.event(s, "repair_done", run_id=self.run_id, trial_id=row.id)
                if retry is not None:
                    Store.event(s, "repair_pending", run_id=self.run_id, trial_id=row.id,
                                params=retry.params, note=retry.note)  # fmt: skip
            if retry is not None:
                self.retries.append((row, retry))
                self.report(f"auto-repair: {retry.note}; trial {row.id} runs again")

    def next_retry(self) -> tuple[Trial, repair.Retry, Decision]:
        """The next repaired trial to run again, with the decision that runs it: the failed
        trial's own, with the repaired parameters."""
        row, retry = self.retries.pop(0)
        body = {**history.decision_body(self.store, row.decision_id), "params": retry.params}
        body.pop("repairs", None)  # the record's note on how it was read, not a field
        body.update(
            todo_new=[], resolve_todo_ids=[], notes_update=None, data_exploration_update=None,
            edits=[], rationale=f"retry of trial {row.id} after auto-repair: {retry.note}",
        )  # fmt: skip
        return row, retry, Decision.model_validate(body)
