"""Agent backends: what fills the worker role (and the mentor's) and turns context into a
decision. The loop's side of them is declared in `worker` (the `Worker` and `Reviewer`
protocols, and `BaseWorker`, the defaults every built-in worker inherits)."""

from __future__ import annotations

from pathlib import Path

from nightlab.agents.errors import AgentError
from nightlab.agents.worker import BaseWorker, Reviewer, Worker
from nightlab.config import Config


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

        return CommandWorker(spec.removeprefix("command:"), cfg, lab)
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


def make_mentor(spec: str, cfg: Config, lab: Path) -> Reviewer:
    """The mentor for a model string; an unusable one fails the run at start."""
    from nightlab.agents.llm import LLMWorkerError
    from nightlab.agents.mentor import Mentor

    _require_price(spec, cfg, "mentor")
    try:
        return Mentor(spec, cfg, lab)
    except LLMWorkerError as exc:
        raise AgentError(f"mentor: {exc}") from None


__all__ = ["AgentError", "BaseWorker", "Reviewer", "Worker", "make_mentor", "make_worker"]


def _require_price(spec: str, cfg: Config, role: str) -> None:
    if cfg.budget.max_usd is not None and spec not in cfg.agents.prices:
        raise AgentError(
            f"[budget] max_usd is set but [agents.prices.{spec!r}] is missing, so the cost of "
            f"the {role} cannot be counted: add its input_per_mtok and output_per_mtok"
        )
