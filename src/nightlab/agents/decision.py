"""What the agents answer: the worker's Decision each cycle (every backend produces this
model and every decision passes the same gate before anything runs) and the mentor's Review
of it."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

MAX_PARAMS_DEPTH = 16  # nesting of a parameter's value (a knob's value is flat or nearly)
MAX_PARAMS_VALUES = 10_000  # values and keys in all params together
MAX_QUERY = 300  # a research query's characters
MAX_CITES = 5  # papers one decision may cite

Action = Literal["run", "wait", "analyze", "research", "report", "stop"]
Dimension = Literal[
    "augmentation",
    "preprocessing",
    "data_sampling",
    "loss",
    "model_arch",
    "optimization",
    "evaluation",
]


class Edit(BaseModel):
    """Replace the single occurrence of `search` in `file` by `replace` (`search` empty: the
    file's whole new content)."""

    model_config = ConfigDict(extra="forbid")
    file: str
    search: str
    replace: str


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    rationale: str = Field(description="Why this, now, given the evidence.")
    hypothesis: str = Field("", description="What should happen to the objective and why.")
    dimension: Dimension | None = None
    params: dict[str, Any] = Field(
        default_factory=dict, description="Overrides on top of the best trial's parameters."
    )
    edits: list[Edit] = Field(default_factory=list)
    query: str | None = Field(
        None, max_length=MAX_QUERY,
        description="For `research`: the papers to look for (a search query, no secrets).",
    )  # fmt: skip
    cites: list[str] = Field(
        default_factory=list, max_length=MAX_CITES,
        description="Papers this decision builds on, by the id search_papers gave "
        "(e.g. 'arxiv:2106.09685').",
    )  # fmt: skip

    @field_validator("params", mode="before")
    @classmethod
    def _bounded(cls, params: Any) -> Any:
        """A nested value deeper or larger than any knob takes is refused here, before
        anything (recording the decision included) recurses into it."""
        if why := unbounded(params):
            raise ValueError(f"params {why}")
        return params

    todo_new: list[str] = Field(default_factory=list, max_length=2)
    notes_update: str | None = None
    data_exploration_update: str | None = None
    resolve_todo_ids: list[int] = Field(default_factory=list)
    _notes: list[str] = PrivateAttr(default_factory=list)
    _asked: int | None = PrivateAttr(default=None)

    @property
    def notes(self) -> list[str]:
        """What reading this decision repaired or dropped (a coding agent's lenient
        decision file); not part of the schema a model answers in."""
        return list(self._notes)

    def set_notes(self, notes: list[str]) -> None:
        self._notes = list(notes)

    @property
    def asked(self) -> int | None:
        """The lab study's trial (its number) a `search` proposal was asked as; not part of
        the schema, so no model can name another's."""
        return self._asked

    def set_asked(self, number: int) -> None:
        self._asked = number


class Review(BaseModel):
    """The mentor's answer: its verdict on the night and, rarely, a better decision."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["on_track", "off_track"]
    critique: str = Field(description="Two or three sentences on the trajectory.")
    question: str | None = Field(None, description="At most one critical question.")
    todo: str | None = Field(None, description="At most one TODO, only when challenging.")
    replacement: Decision | None = Field(None, description="A better decision, if any.")
    cites: list[str] = Field(
        default_factory=list, max_length=MAX_CITES,
        description="Papers the critique rests on, by the id search_papers gave.",
    )  # fmt: skip
    _literature: str | None = PrivateAttr(default=None)  # [agents] mentor_require_literature

    @property
    def literature(self) -> str | None:
        """With `mentor_require_literature`: "searched" (a paper search in this review),
        "non_compliant" (a challenge without one, after being sent back once), or None."""
        return self._literature

    def set_literature(self, state: str) -> None:
        self._literature = state


def unbounded(data: Any) -> str | None:
    """Why JSON-like `data` is too deep or too big for a decision, or holds NaN or an
    infinity (the record's JSON could not hold it); None: it is fine. Walked without
    recursion."""
    stack, seen = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_PARAMS_VALUES:
            return f"hold over {MAX_PARAMS_VALUES} values"
        if depth > MAX_PARAMS_DEPTH:
            return f"are nested deeper than {MAX_PARAMS_DEPTH} levels"
        if isinstance(value, float) and not math.isfinite(value):
            return f"hold {value}, not a finite number"
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
            seen += len(value)
        elif isinstance(value, list | tuple):
            stack += [(v, depth + 1) for v in value]
    return None
