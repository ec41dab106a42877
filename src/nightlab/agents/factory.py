"""Which worker and which mentor a lab gets: `[agents] worker` and `[agents] mentor`.

`worker = "SPEC"` in nightlab.toml names the worker, looked up in this order:

- `"search"`: Optuna's TPE over the `[search]` knobs;
- `"replay:FILE"`: decisions read from a JSON-lines file (relative to the lab);
- `"command:NAME"`: a coding-agent CLI (codex, claude, aider, or `[agents.commands.NAME]`);
- `"NAME:ARGS"` or `"NAME"`, where an installed package registers NAME as a worker plugin
  (below); ARGS is everything after the first ":";
- `"PROVIDER:MODEL"`: a pydantic-ai model (`anthropic:…`, `openai:…`, `ollama:…`), or a
  model of the OpenAI-compatible server at `[agents] base_url`.

So the built-in names (search, replay, command) cannot be taken by a plugin, and a plugin
named like a model provider (say `openai`) comes before the model.

Worker plugins. A package registers a factory under the entry-point group
`nightlab.workers`, in its pyproject.toml:

    [project.entry-points."nightlab.workers"]
    mine = "my_package.workers:make"

and a lab selects it with `worker = "mine:ANY ARGS"`. nightlab calls the factory once, at
the start of a run:

    make(args: str, cfg: nightlab.config.Config, lab: pathlib.Path) -> Worker

with `args` the text after "mine:" ("" when the spec is just "mine"), `cfg` the lab's
validated configuration and `lab` the lab folder. It returns a worker
(`nightlab.agents.Worker`): `decide(context) -> Decision`, `observe(row)` and
`resume(finished, decided)`, and optionally `stop()` (end a decide() in progress: the night
ends); subclassing `nightlab.agents.BaseWorker` gives the rest.
Whatever of `view`, `slow`, `wants_context` and `last_usage` the worker lacks gets
BaseWorker's default, and a missing or empty `name` becomes the spec (keep it stable: a
resumed lab counts the worker's decisions by name). A factory that raises
`nightlab.UserError` (e.g. `AgentError`) fails the run with its message; any other
exception, a package that does not import, or a result without `decide`, `observe` and
`resume` fails it with one line naming the package.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.agents.errors import AgentError
from nightlab.agents.worker import BaseWorker, Reviewer, Worker
from nightlab.config import Config, plugin, require

WORKERS = "nightlab.workers"  # the entry-point group of worker plugins
BUILT_IN = ("search", "replay", "command")
DEFAULTS = ("view", "slow", "wants_context", "last_usage")  # filled from BaseWorker
METHODS = ("decide", "observe", "resume")


def make_worker(spec: str, cfg: Config, lab: Path) -> Worker:
    """The worker named by `spec` (see the module docstring); an unusable one raises a
    UserError (AgentError or PluginError) whose one line says why, at start."""
    name, _, args = spec.partition(":")
    if spec == "search":
        from nightlab.agents.search import SearchWorker

        try:
            return SearchWorker(cfg, seed=cfg.trial.seed)
        except ValueError as exc:
            raise AgentError(str(exc)) from None
    if name == "replay" and ":" in spec:
        from nightlab.agents.replay import ReplayError, ReplayWorker

        path = Path(args)
        path = (path if path.is_absolute() else lab / path).resolve()
        # one name per file however it was spelled: the replay position is counted by name
        shown = path.relative_to(lab.resolve()) if path.is_relative_to(lab.resolve()) else path
        try:
            return ReplayWorker(path, f"replay:{shown}")
        except ReplayError as exc:
            raise AgentError(str(exc)) from None
    if name == "command" and ":" in spec:
        from nightlab.agents.command import CommandWorker
        from nightlab.trials import process

        return CommandWorker(args, cfg, lab, runner=process.run)
    plugins = registered()
    if name and name not in BUILT_IN and name in plugins:
        return _plugin_worker(spec, name, args, cfg, lab)
    if ":" in spec:
        require("pydantic_ai", "llm", f"the worker {spec!r} (a model)")
        from nightlab.agents.llm import LLMWorker, LLMWorkerError, UnknownModelError

        _require_price(spec, cfg, "worker")
        try:
            return LLMWorker(spec, cfg, lab)
        except UnknownModelError:
            raise AgentError(
                f"unknown worker {spec!r}: no worker plugin named {name!r} is installed "
                f"({_installed(plugins)}) and pydantic-ai knows no model {spec!r}; pip "
                "install the package that provides it, or fix the name"
            ) from None
        except LLMWorkerError as exc:
            raise AgentError(str(exc)) from None
    raise AgentError(
        f'unknown worker {spec!r}: use "search" (Optuna), "replay:FILE", a model such as '
        '"anthropic:claude-sonnet-4-5" or "openai:gpt-4o", a coding agent such as '
        f'"command:claude", or a worker plugin "NAME:ARGS" ({_installed(plugins)})'
    )


def make_mentor(spec: str, cfg: Config, lab: Path) -> Reviewer:
    """The mentor for a model string; an unusable one fails the run at start."""
    require("pydantic_ai", "llm", f"the mentor {spec!r} (a model)")
    from nightlab.agents.llm import LLMWorkerError
    from nightlab.agents.mentor import Mentor

    _require_price(spec, cfg, "mentor")
    try:
        return Mentor(spec, cfg, lab)
    except LLMWorkerError as exc:
        raise AgentError(f"mentor: {exc}") from None


def is_model(spec: str) -> bool:
    """Does `spec` name a pydantic-ai model (not a built-in worker or a plugin)?"""
    name = spec.partition(":")[0]
    return ":" in spec and name not in BUILT_IN and name not in registered()


def registered() -> dict[str, str]:
    """The installed worker plugins: name → the package that registers it."""
    return {
        ep.name: ep.dist.name if ep.dist else ep.value.split(":")[0]
        for ep in entry_points(group=WORKERS)
    }


def _installed(plugins: dict[str, str]) -> str:
    return f"installed: {', '.join(sorted(plugins))}" if plugins else "none is installed"


def _plugin_worker(spec: str, name: str, args: str, cfg: Config, lab: Path) -> Worker:
    factory = plugin(WORKERS, name)  # PluginError (naming the package) if it does not load
    package = registered()[name]
    try:
        worker: Any = factory(args, cfg, lab)
    except UserError:
        raise
    except Exception as exc:
        raise AgentError(
            f"worker {spec!r} (plugin {name!r}, package {package}) failed to start: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    missing = [m for m in METHODS if not callable(getattr(worker, m, None))]
    if missing:
        raise AgentError(
            f"worker {spec!r} (plugin {name!r}, package {package}) returned "
            f"{type(worker).__name__}, which lacks {', '.join(missing)}: a worker plugin's "
            "factory returns a nightlab.agents.Worker (subclass nightlab.agents.BaseWorker)"
        )
    try:
        if not getattr(worker, "name", None):
            worker.name = spec
        for attr in DEFAULTS:
            if not hasattr(worker, attr):
                setattr(worker, attr, getattr(BaseWorker, attr))
        if not callable(getattr(worker, "stop", None)):
            worker.stop = _nothing
    except AttributeError as exc:  # __slots__ or a frozen object
        raise AgentError(
            f"worker {spec!r} (plugin {name!r}, package {package}): cannot set its "
            f"default attributes ({exc}); subclass nightlab.agents.BaseWorker"
        ) from None
    return worker


def _nothing() -> bool:
    """The `stop()` of a plugin's worker that declares none: it starts nothing to stop."""
    return False


def _require_price(spec: str, cfg: Config, role: str) -> None:
    if cfg.budget.max_usd is not None and spec not in cfg.agents.prices:
        raise AgentError(
            f"[budget] max_usd is set but [agents.prices.{spec!r}] is missing, so the cost of "
            f"the {role} cannot be counted: add its input_per_mtok and output_per_mtok"
        )
