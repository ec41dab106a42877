"""What a night needs of nightlab's optional extras (pyproject's `[project.optional-dependencies]`),
checked before anything runs: a lab that selects a model, Slurm or notifications without the
extra that brings them fails at once with the `pip install` to run, not after its baseline."""

from __future__ import annotations

from nightlab.agents.factory import is_model
from nightlab.config import Config, require


def check(cfg: Config, worker: str | None = None) -> None:
    """Raise MissingExtra (one line) for the first extra this night needs and lacks;
    `worker` is the run's `--worker`, else `[agents] worker`."""
    spec = worker or cfg.agents.worker
    if is_model(spec):
        require("pydantic_ai", "llm", f"the worker {spec!r} (a model)")
    if cfg.agents.mentor:
        require("pydantic_ai", "llm", f"the mentor {cfg.agents.mentor!r} (a model)")
    if cfg.executor.kind == "slurm":
        require("submitit", "slurm", '[executor] kind = "slurm"')
    if cfg.notify.urls:
        require("apprise", "notify", "[notify] urls")
