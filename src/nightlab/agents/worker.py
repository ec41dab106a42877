"""What the loop uses of a worker and of the mentor, declared.

The loop relies on exactly these names and on nothing else (no getattr/hasattr probing):
every worker `make_worker` returns has all of them, built-in or plugin. Built-in workers
derive from `BaseWorker`, which gives the defaults; a plugin's worker may too, and the
factory fills in any default a plugin's worker leaves out.
"""

from __future__ import annotations

from typing import Any, Protocol

from nightlab.agents.decision import Decision, Review
from nightlab.agents.tools import LabView

Usage = dict[str, int]  # input_tokens, output_tokens, requests of one model call


class Worker(Protocol):
    """The worker role: turns each cycle's context into a Decision.

    Optional: `use_study(lab_study)` — a worker that has it is handed the lab's persistent
    Optuna study (store/study.py) before `resume`, and asks its proposals from it (the
    `search` worker); the loop tells that study how every trial ends."""

    name: str  # stable across runs: a resumed lab counts this worker's decisions by it
    view: LabView | None  # set by the loop before the first decision (read-only tools)
    slow: bool  # True: decide() takes long, the loop calls it off its own thread
    wants_context: bool  # True: the loop renders the full context each cycle
    last_usage: Usage | None  # tokens of the last decide() call (None: nothing counted)

    def decide(self, context: dict[str, Any]) -> Decision:
        """The next step, given this cycle's context (the loop's dict)."""
        ...

    def observe(self, row: Any) -> None:
        """A trial of the lab ended (its store row: params, status, objective)."""
        ...

    def resume(self, finished: list[Any], decided: int) -> None:
        """The lab resumes: the trials already finished (store rows) and how many
        decisions this worker (by name) made before."""
        ...

    def stop(self) -> bool:
        """The night ends: stop a decide() in progress (called from another thread) and
        end whatever it started; True: the loop waits (briefly) for decide() to return,
        so nothing it started outlives the loop. A worker that starts nothing: False."""
        ...


class Reviewer(Protocol):
    """The mentor's role: reviews the worker's decision, and may replace it (the built-in
    one is `nightlab.agents.mentor.Mentor`)."""

    name: str  # the model string; [agents.prices] is looked up by it
    last_usage: Usage | None  # tokens of the last review() call

    def review(self, context: str, decision: Decision, why: str) -> Review:
        """Judge `decision` given the rendered `context`; `why` says why it is asked."""
        ...


class BaseWorker:
    """The defaults every built-in worker inherits: a fast worker that reads no context,
    counts no tokens, needs no view and learns nothing from trials or resumes."""

    name: str = ""
    view: LabView | None = None
    slow: bool = False
    wants_context: bool = False
    last_usage: Usage | None = None

    def decide(self, context: dict[str, Any]) -> Decision:
        raise NotImplementedError

    def observe(self, row: Any) -> None:
        pass

    def resume(self, finished: list[Any], decided: int) -> None:
        pass

    def stop(self) -> bool:
        return False
