"""LLM workers through pydantic-ai: any model string (`anthropic:…`, `openai:…`,
`openrouter:…`, `ollama:…`) or any OpenAI-compatible server (`[agents] base_url`).

The answer is validated against the Decision model (pydantic-ai retries invalid output);
the worker reads the lab through read-only tools and then passes the same gate as every
other worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.usage import RunUsage, UsageLimits

from nightlab.agents.context import read_mission, render
from nightlab.agents.decision import Decision
from nightlab.agents.tools import LabView
from nightlab.agents.worker import BaseWorker, Usage
from nightlab.config import Config
from nightlab.store.redact import add_secret_names, config_secret_names, redact_data

MAX_REQUESTS = 12  # model requests per decision (tool calls and retries included)
TIMEOUT_S = 180.0  # per request: a hung server is an error, not a hung night

# A small, counted rule budget (see seed 001: lean prompts).
RULES = (
    "Change one thing per trial, so its effect can be told apart from the noise.",
    "A trial is kept only if it beats the best by more than the noise threshold; "
    "seed luck is not progress.",
    "Read a file before editing it: an edit is a search/replace block whose search text "
    "occurs exactly once in an editable file.",
    "Parameters must stay inside their clamps; the ones you omit keep the best trial's values.",
    "Never change how the objective is measured, nor the validation data.",
    "If the last trial failed, fix that first.",
    "Ground the rationale in the evidence; state a hypothesis the trial can refute.",
    "Use action `stop` only when nothing promising is left to try.",
)


class LLMWorkerError(Exception):
    pass


class UnknownModelError(LLMWorkerError):
    """pydantic-ai knows no model (no provider) by that name."""


def resolve_model(spec: str, cfg: Config, role: str = "worker") -> Any:
    """The pydantic-ai model for `spec`; an unusable one fails now, naming the fix.
    `[agents] base_url` serves the worker only."""
    try:
        return _resolve(spec, cfg, role)
    except ImportError as exc:  # pydantic-ai without this provider's client (pydantic-ai-slim)
        raise LLMWorkerError(f"{role} {spec!r}: {' '.join(str(exc).split())}") from None


def _resolve(spec: str, cfg: Config, role: str) -> Any:
    from pydantic_ai.exceptions import UserError

    agents = cfg.agents
    add_secret_names(*config_secret_names(cfg))  # the key's value is redacted everywhere
    if agents.base_url and role == "worker":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        key = "none"  # local servers (vLLM, llama.cpp, LM Studio) usually ignore the key
        if agents.api_key_env:
            key = os.environ.get(agents.api_key_env, "")
            if not key:
                raise LLMWorkerError(
                    f"[agents] api_key_env = {agents.api_key_env!r} but that variable is not "
                    "set: export it with the key of the server at base_url"
                )
        _probe(agents.base_url, key)
        name = spec.split(":", 1)[1] if ":" in spec else spec
        return OpenAIChatModel(name, provider=OpenAIProvider(base_url=agents.base_url, api_key=key))
    from pydantic_ai.models import infer_model

    try:
        return infer_model(spec)
    except UserError as exc:
        error = UnknownModelError if str(exc).startswith("Unknown model") else LLMWorkerError
        raise error(f"worker {spec!r}: {exc}") from None


def _probe(base_url: str, key: str) -> None:
    """Fail at start, not at the first decision, when the server at base_url is not there."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        urllib.request.urlopen(request, timeout=5.0).close()
    except urllib.error.HTTPError:
        pass  # it answers (maybe without a /models route): it is there
    except (urllib.error.URLError, OSError) as exc:
        raise LLMWorkerError(
            f"[agents] base_url = {base_url!r} does not answer ({exc}); "
            "start the server or fix the address"
        ) from None


def _list_files(ctx: RunContext[LabView]) -> list[str]:
    """The files you may edit, in the current best code."""
    return redact_data(ctx.deps.list_files())


def _read_file(ctx: RunContext[LabView], path: str) -> str:
    """The content of one editable file of the current best code."""
    return ctx.deps.read_file(path)


def _grep(ctx: RunContext[LabView], text: str) -> str:
    """Lines of the editable files containing this text (plain text, not a regex)."""
    return ctx.deps.grep(text)


def _tail_log(ctx: RunContext[LabView], trial: int, lines: int = 40) -> str:
    """The last lines of a trial's stderr and stdout (the held-out test run's are refused)."""
    return ctx.deps.tail_log(trial, lines)


def _leaderboard(ctx: RunContext[LabView], top: int = 10) -> str:
    """The best succeeded trials with their parameters."""
    return ctx.deps.show_leaderboard(top)


def _trial_diff(ctx: RunContext[LabView], trial: int) -> str:
    """The code change a trial ran with (the held-out test run's is refused)."""
    return ctx.deps.trial_diff(trial)


def search_papers(ctx: RunContext[LabView], query: str) -> str:
    """Search papers (arXiv, OpenAlex, Semantic Scholar) for a query; each line gives the
    id to cite in `cites` and to pass to read_paper. Never put a secret in a query."""
    return ctx.deps.search_papers(query)


def read_paper(ctx: RunContext[LabView], id: str) -> str:
    """A paper's metadata and abstract, by the id search_papers gave."""
    return ctx.deps.read_paper(id)


LITERATURE_TOOLS = (search_papers, read_paper)
TOOLS = (_list_files, _read_file, _grep, _tail_log, _leaderboard, _trial_diff, *LITERATURE_TOOLS)


def usage_of(usage: Any) -> dict[str, int]:
    """Tokens and requests of one pydantic-ai run (its RunUsage)."""
    return {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "requests": usage.requests,
    }


class LLMWorker(BaseWorker):
    wants_context = True  # the loop renders the full context only for workers that read it
    slow = True  # it thinks in the background while the loop watches the trials

    def __init__(self, spec: str, cfg: Config, lab: Path, model: Any = None) -> None:
        self.name = spec
        add_secret_names(*config_secret_names(cfg))
        self.view: LabView | None = None  # given by the loop before the first decision
        mission = read_mission(lab, cfg, "worker")
        rules = "\n".join(f"{i}. {rule}" for i, rule in enumerate(RULES, 1))
        self.agent = Agent(
            model if model is not None else resolve_model(spec, cfg),
            output_type=Decision,
            deps_type=LabView,
            instructions=f"You are the Builder of an ML research lab run by nightlab.\n"
            f"Rules:\n{rules}\n{mission}",
            tools=list(TOOLS),
            retries=3,
            model_settings={"timeout": TIMEOUT_S},
        )
        self.last_usage: Usage | None = None

    def decide(self, context: dict[str, Any]) -> Decision:
        if self.view is None:
            raise LLMWorkerError("the loop gave this worker no view of the lab")
        self.last_usage, usage = None, RunUsage()
        try:
            return self.agent.run_sync(
                render(context),
                deps=self.view,
                usage=usage,
                usage_limits=UsageLimits(request_limit=MAX_REQUESTS),
            ).output
        finally:  # a failed call (invalid output, limits) costs tokens too
            self.last_usage = usage_of(usage)

    def observe(self, trial: Any) -> None:
        pass  # the store is its memory: each context is rebuilt from it

    def resume(self, finished: list[Any], decided: int) -> None:
        pass
