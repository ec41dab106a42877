"""Agent backends: what fills the worker role (and the mentor's) and turns context into a
decision. The loop's side of them is declared in `worker` (the `Worker` and `Reviewer`
protocols); `factory` builds them from nightlab.toml, built-in or plugin."""

from __future__ import annotations

from nightlab.agents.errors import AgentError
from nightlab.agents.factory import make_mentor, make_worker
from nightlab.agents.worker import BaseWorker, Reviewer, Worker

__all__ = ["AgentError", "BaseWorker", "Reviewer", "Worker", "make_mentor", "make_worker"]
