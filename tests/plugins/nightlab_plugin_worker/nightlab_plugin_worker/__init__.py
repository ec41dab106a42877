"""A worker plugin as a third party writes one: `worker = "steps:0.5,2"` runs one trial per
boost value, in order, then stops; and a notifier that only records what it is told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nightlab.agents import AgentError, BaseWorker
from nightlab.agents.decision import Decision
from nightlab.config import Config


class StepsWorker(BaseWorker):
    def __init__(self, spec: str, boosts: list[float]) -> None:
        self.name = spec
        self.boosts = boosts
        self.position = 0

    def resume(self, finished: list[Any], decided: int) -> None:
        self.position = decided

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.position >= len(self.boosts):
            return Decision(action="stop", rationale=f"all {len(self.boosts)} steps were run")
        boost = self.boosts[self.position]
        self.position += 1
        return Decision(
            action="run",
            rationale=f"the steps plugin's step {self.position}: boost={boost}",
            hypothesis="a larger boost raises the score",
            params={"boost": boost},
        )


def make(args: str, cfg: Config, lab: Path) -> StepsWorker:
    """The entry point: `args` is what follows "steps:" in nightlab.toml."""
    try:
        boosts = [float(item) for item in args.split(",") if item.strip()]
    except ValueError:
        raise AgentError(f"worker 'steps:{args}': give boost values, e.g. steps:0.5,2") from None
    if "boost" not in cfg.search:
        raise AgentError("worker 'steps' needs a [search.boost] knob")
    return StepsWorker(f"steps:{args}", boosts)


class RecordingNotifier:
    """Remembers every message nightlab sends it (`[notify] urls = ["plugin:record"]`), in
    `sent` and, across instances, in the class's `log` (kind, title, body)."""

    log: list[tuple[str, str, str]] = []

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, kind: str, title: str, body: str) -> None:
        if "FAIL-ME" in body:
            raise ConnectionError("the pager service is down")
        self.sent.append((kind, title, body))
        RecordingNotifier.log.append((kind, title, body))
