"""What a coding agent is asked to answer, and how its answer is read.

The decision file is read leniently: a model that wraps its JSON in a ```json fence, leaves a
`// comment` or a trailing comma, adds a key of its own or a third TODO has still done the
work (its code changes), and one slip must not throw that away. Only `action` and
`rationale` are required; an optional field that does not validate is dropped, and every
such repair is a note the record keeps. What cannot be read at all is an error that says
why, and the agent is asked once more (command.py).
"""

from __future__ import annotations

import json
import math
import re

from pydantic import ValidationError

from nightlab.agents.decision import Decision
from nightlab.store.redact import redact

DECISION_FILE = ".nightlab-decision.json"
EXAMPLE = {
    "action": "run",
    "rationale": "why this, now, given the evidence",
    "hypothesis": "what should happen to the objective, and why",
    "dimension": "optimization",
    "params": {"lr": 0.001},
    "todo_new": [],
    "notes_update": None,
    "resolve_todo_ids": [],
}
ANSWER = f"""
# How to answer
You work in a copy of the lab's code (the current best). Change the editable files
directly if the next trial needs a code change; change nothing else, and do not run the
training: nightlab runs it. Nobody reads questions: decide yourself. Then write the file
`{DECISION_FILE}` in this folder with one JSON object, for example:

{json.dumps(EXAMPLE, indent=2)}

`action` is one of run, wait, analyze, research, stop; `dimension` one of augmentation,
preprocessing, data_sampling, loss, model_arch, optimization, evaluation; `params` are
overrides on top of the best trial's parameters; at most 2 `todo_new`. Only `action` and
`rationale` are required. Only `run` may change code or params. Changes outside the
editable files reject the decision.
"""
REQUIRED = ("action", "rationale")
MAX_CHARS = 1_000_000  # a decision file is a few hundred bytes; past this it is not one
NONFINITE = object()  # NaN, Infinity or a number past a float: JSON has none of them
FIELDS = set(Decision.model_fields)
ERROR_RE = re.compile(
    r"error|fatal|refused|denied|unknown (option|argument)|unauthori[sz]ed|forbidden|"
    r"traceback|exception|not found|invalid",
    re.IGNORECASE,
)


class Unreadable(ValueError):
    """The decision file cannot be read as a decision; the message says why."""


def parse(raw: str) -> tuple[Decision, list[str]]:
    """The decision in `raw` and the notes on what was repaired or dropped."""
    notes: list[str] = []
    if len(raw) > MAX_CHARS:  # read char by char below: a huge file would stall the loop
        raise Unreadable(f"it holds {len(raw)} characters (a decision is at most {MAX_CHARS})")
    text = raw.strip().lstrip("\ufeff")
    fenced = re.search(r"```[A-Za-z]*\s*\n(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced[1]
        notes.append("a ``` fence was taken off")
    cleaned = _strip_comments(text)
    if cleaned != text:
        notes.append("comments or trailing commas were taken out")
    try:
        data = json.loads(cleaned, parse_constant=lambda _: NONFINITE, parse_float=_float)
    except (ValueError, RecursionError) as exc:
        raise Unreadable(f"it is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Unreadable(f"it holds a {type(data).__name__}, not one JSON object")
    missing = [k for k in REQUIRED if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        raise Unreadable(f"it lacks {' and '.join(repr(k) for k in missing)} (required)")
    kept = {k: data[k] for k in REQUIRED}
    try:
        Decision.model_validate(kept)
    except ValidationError as exc:
        raise Unreadable(_first_error(exc)) from None
    for key, value in data.items():
        if key in REQUIRED:
            continue
        if key not in FIELDS:  # its name is the agent's text: redacted before it is cut
            notes.append(f"unknown key {redact(key)[:40]!r} ignored")
            continue
        if _nonfinite(value):  # the record's JSON (and SQLite's json_extract) has no NaN
            notes.append(f"{key} dropped: it holds NaN or an infinite number (not JSON)")
            continue
        if key == "todo_new" and isinstance(value, list) and len(value) > 2:
            notes.append(f"todo_new: {len(value) - 2} TODO(s) past the 2 allowed dropped")
            value = value[:2]
        try:
            Decision.model_validate({**kept, key: value})
        except (ValidationError, RecursionError) as exc:
            why = _first_error(exc) if isinstance(exc, ValidationError) else "too deep"
            notes.append(f"{key} dropped: {why}")
            continue
        kept[key] = value
    decision = Decision.model_validate(kept)
    decision.set_notes(notes)
    return decision, notes


def error_tail(text: str, echo: str = "", chars: int = 600) -> str:
    """What an agent's output says went wrong: the first line that reads like an error and
    the last line, else the end; lines of `echo` (the prompt, which some CLIs print back
    and which would fill the end) left out; secrets redacted (it reaches the record)."""
    text, echo = redact(text), redact(echo)
    echoed = {line.strip() for line in echo.splitlines()}
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() not in echoed]
    if not lines:
        return "no output"
    first = next((line for line in lines if ERROR_RE.search(line)), None)
    if first is None:
        end = " | ".join(lines)
        return f"…{end[-chars:]}" if len(end) > chars else end
    first = first[:300]
    return first if lines[-1][:300] == first else f"{first} … {lines[-1][:300]}"


def _float(text: str) -> object:
    value = float(text)
    return value if math.isfinite(value) else NONFINITE  # 1e400 is read as inf


def _nonfinite(value: object) -> bool:
    """Whether JSON-like `value` holds NONFINITE anywhere (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is NONFINITE:
            return True
        if isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return False


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the object"
    return f"{where}: {err['msg']}"[:300]


def _strip_comments(text: str) -> str:
    """JSON without // and /* */ comments and trailing commas (outside strings)."""
    out: list[str] = []
    i, n, in_string = 0, len(text), False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif ch in "}]":
            j = len(out) - 1
            while j >= 0 and out[j].isspace():
                j -= 1
            if j >= 0 and out[j] == ",":
                del out[j]
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)
