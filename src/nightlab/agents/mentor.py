"""The mentor ("Mentor"): a second model that reviews the worker's decision every few
cycles, or when the night stalls, and may replace it. It may search papers (the worker's
`search_papers` / `read_paper` tools); with `[agents] mentor_require_literature` a challenge
(`off_track`) made without a search in that review is sent back once, then recorded as
non-compliant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic_ai.usage import RunUsage, UsageLimits

import nightlab.agents.llm as llm  # by module: tests replace llm.resolve_model
from nightlab.agents.context import read_mission
from nightlab.agents.decision import Decision, Review
from nightlab.agents.tools import LabView
from nightlab.agents.worker import Usage
from nightlab.config import Config

__all__ = ["Mentor", "Review", "RULES"]

RULES = (
    "Judge the trajectory, not the wording: is the night learning something?",
    "Say `off_track` only with evidence from the leaderboard or the logs.",
    "Ask at most one critical question.",
    "Add a TODO only when you challenge, and at most one.",
    "Propose a replacement decision only when the worker's is clearly worse.",
    "Never suggest touching the metric or the validation data.",
    "Check a challenge against the literature (search_papers) when it rests on a claim "
    "about what works; cite the papers you rely on.",
)
SEND_BACK = (
    "You challenged the Builder (off_track) without searching the literature in this review. "
    "This lab requires it: call search_papers on the claim your challenge rests on, then "
    "answer again (cite what you found, or change your verdict)."
)


class Mentor:
    """The built-in mentor (`[agents] mentor = "MODEL"`): a pydantic-ai model answering a
    Review; it satisfies the `nightlab.agents.worker.Reviewer` protocol."""

    def __init__(self, spec: str, cfg: Config, lab: Path, model: Any = None) -> None:
        from pydantic_ai import Agent

        self.name = spec
        self.require_literature = cfg.agents.mentor_require_literature
        self.view: LabView | None = None  # the worker's view, given by the loop (its papers)
        mission = read_mission(lab, cfg, "mentor")
        rules = "\n".join(f"{i}. {rule}" for i, rule in enumerate(RULES, 1))
        self.agent = Agent(
            model if model is not None else llm.resolve_model(spec, cfg, role="mentor"),
            output_type=Review,
            deps_type=LabView,
            tools=list(llm.LITERATURE_TOOLS),
            instructions="You are the Mentor of an ML research lab run by nightlab: you "
            f"review the Builder's next decision.\nRules:\n{rules}\n{mission}",
            retries=3,
            model_settings={"timeout": llm.TIMEOUT_S},
        )
        self.last_usage: Usage | None = None

    def review(self, context: str, decision: Decision, why: str) -> Review:
        prompt = (
            f"{context}\n\n# Why you are asked\n{why}\n\n# The Builder's decision\n"
            f"{json.dumps(decision.model_dump(exclude_defaults=True), indent=1)}"
        )
        self.last_usage, usage = None, RunUsage()
        view = self.view or LabView(lambda: [], lambda path: None, [], lambda n: [],
                                    lambda trial, name: None)  # fmt: skip
        try:
            before = view.searches
            review = self._ask(prompt, view, usage)
            if not self.require_literature:
                return review
            if review.verdict == "off_track" and view.searches == before:
                review = self._ask(f"{prompt}\n\n# Sent back\n{SEND_BACK}", view, usage)
            searched = view.searches > before
            if review.verdict == "off_track" and not searched:
                review.set_literature("non_compliant")
            elif searched:
                review.set_literature("searched")
            return review
        finally:
            self.last_usage = llm.usage_of(usage)

    def _ask(self, prompt: str, view: LabView, usage: RunUsage) -> Review:
        return self.agent.run_sync(
            prompt, deps=view, usage=usage,
            usage_limits=UsageLimits(request_limit=llm.MAX_REQUESTS),
        ).output  # fmt: skip
