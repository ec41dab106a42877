"""Agent backends: what fills the worker role and turns context into a decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from nightlab import UserError
from nightlab.agents.decision import Decision
from nightlab.config import Config


class Worker(Protocol):
    name: str

    def decide(self, context: dict[str, Any]) -> Decision: ...
    def observe(self, trial: Any) -> None: ...
    def resume(self, finished: list[Any], decided: int) -> None: ...


class AgentError(UserError):
    """The configured agent backend cannot be used; the message says why and what to do."""


def make_worker(spec: str, cfg: Config, lab: Path) -> Worker:
    """Build the worker named by `spec`: "search", "replay:FILE", a model string or
    "command:NAME"."""
    if spec == "search":
        from nightlab.agents.search import SearchWorker

        try:
            return SearchWorker(cfg, seed=cfg.trial.seed)
        except ValueError as exc:
            raise AgentError(str(exc)) from None
    if spec.startswith("replay:"):
        from nightlab.agents.replay import ReplayError, ReplayWorker

        path = Path(spec.removeprefix("replay:"))
        path = (path if path.is_absolute() else lab / path).resolve()
        # one name per file however it was spelled: the replay position is counted by name
        shown = path.relative_to(lab.resolve()) if path.is_relative_to(lab.resolve()) else path
        try:
            return ReplayWorker(path, f"replay:{shown}")
        except ReplayError as exc:
            raise AgentError(str(exc)) from None
    if spec.startswith("command:"):
        from nightlab.agents.command import CommandWorker
        from nightlab.trials import process

        return CommandWorker(spec.removeprefix("command:"), cfg, lab, runner=process.run)
    if ":" in spec:
        from nightlab.agents.llm import LLMWorker, LLMWorkerError

        _require_price(spec, cfg, "worker")
        try:
            return LLMWorker(spec, cfg, lab)
        except LLMWorkerError as exc:
            raise AgentError(str(exc)) from None
    raise AgentError(
        f'unknown worker {spec!r}: use "search" (Optuna), "replay:FILE", a model such as '
        '"anthropic:claude-sonnet-4-5" or "openai:gpt-4o", or a coding agent such as '
        '"command:claude"'
    )


def make_mentor(spec: str, cfg: Config, lab: Path) -> Any:
    """The mentor for a model string; an unusable one fails the run at start."""
    from nightlab.agents.llm import LLMWorkerError
    from nightlab.agents.mentor import Mentor

    _require_price(spec, cfg, "mentor")
    try:
        return Mentor(spec, cfg, lab)
    except LLMWorkerError as exc:
        raise AgentError(f"mentor: {exc}") from None


def _require_price(spec: str, cfg: Config, role: str) -> None:
    if cfg.budget.max_usd is not None and spec not in cfg.agents.prices:
        raise AgentError(
            f"[budget] max_usd is set but [agents.prices.{spec!r}] is missing, so the cost of "
            f"the {role} cannot be counted: add its input_per_mtok and output_per_mtok"
        )
