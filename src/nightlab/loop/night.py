"""The open night as every part of the loop shares it: the lab, its config and store, the
journal, the git workspace, this run, and the best so far (read from the store).

Also the few values the parts hand back to the loop: what to run next (`Run`) and what
happened instead (`Next`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.agents.decision import Decision
from nightlab.config import Config
from nightlab.loop.journal import Journal
from nightlab.loop.lines import Lines
from nightlab.loop.notices import Notices
from nightlab.ratchet import Best, Noise
from nightlab.store import read
from nightlab.store.db import Store
from nightlab.store.paths import LabPaths
from nightlab.trials.workspace import Workspace


class NightError(UserError):
    """The night cannot go on (e.g. the baseline fails); the message says why."""

    exit_code = 1


class Next(Enum):
    """What a step did when it started nothing itself."""

    STARTED = "a trial started"
    IDLE = "an idle cycle: nothing runnable"
    WAIT = "waiting: a thought, the noise estimate or a running trial"
    EXPLORE = "finish-up not due: an ordinary cycle may run"


@dataclass(frozen=True)
class Run:
    """A trial to start: the decision, the code to run and against which base it was
    admitted (None: the best at start time)."""

    decision: Decision
    kind: str  # baseline | trial | confirm | test
    commit: str
    seed: int
    usage: dict[str, Any] | None = None
    best: Best | None = None
    notes: tuple[str, ...] = ()  # what admission normalised (the training spec's clamps)
    confirms: int | None = None  # a confirmation run: the trial it re-runs on a new seed


@dataclass
class Night:
    lab: Path
    cfg: Config
    store: Store
    journal: Journal
    ws: Workspace
    report: Lines  # the night's human lines (logged; see lines.py)
    slots: int
    run_id: int | None = None
    night_id: str = ""
    base_commit: str = ""
    deadline: float | None = None
    protected: dict[str, str] = field(default_factory=dict)
    notices: Notices = field(default_factory=Notices)  # silent until the loop opens them
    _view: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def paths(self) -> LabPaths:
        return LabPaths(self.lab)

    @property
    def state(self) -> Path:
        return self.paths.state

    def trial_dir(self, trial_id: int) -> Path:
        return self.paths.trial(trial_id)

    def event(self, kind: str, /, **data: Any) -> None:
        """One event, in its own transaction."""
        with self.store.tx() as s:
            Store.event(s, kind, **data)

    def _load(self) -> dict[str, Any]:
        view = self._view  # one read of the attribute: the worker's thread calls this too
        if not view:
            with read.connect(self.store.path) as conn:
                best = read.current_best(conn)
                noise = read.noise(conn, self.cfg.ratchet.sigma_confidence)
                screened = conn.execute("SELECT 1 FROM trials WHERE verdict='screened' LIMIT 1")
                view = {"best": best, "noise": noise, "screened": screened.fetchone() is not None}
            self._view = view
        return view

    def screened(self) -> bool:
        """Some trial passed the screen and awaits its confirmation runs' verdict."""
        return self._load()["screened"]

    def best(self) -> Best | None:
        """The current base; read once per recorded trial (the store is the truth)."""
        return self._load()["best"]

    def noise(self) -> Noise:
        """The ratchet's noise: pooled over every candidate that ran more than once."""
        return self._load()["noise"]

    def challengers(self, best_trial: int) -> int:
        """Candidates that passed the screen against this best so far (judged or not)."""
        with read.connect(self.store.path) as conn:
            return read.challengers(conn, best_trial)

    def sigma(self) -> float:
        return self.noise().sigma

    def base(self) -> str:
        """The commit new work builds on: the best's, else the night's first snapshot."""
        best = self.best()
        return best.commit if best else self.base_commit

    def forget(self) -> None:
        """A trial was recorded: the best and the noise may have moved."""
        self._view = {}

    def reader(self, commit: str) -> Callable[[str], str | None]:
        return lambda path: self.ws.read(commit, path) if self.ws.exists(commit, path) else None
