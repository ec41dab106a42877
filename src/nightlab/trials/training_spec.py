"""Spec trials (`[trial] spec`): a JSON training spec that workers may edit.

Before a spec runs, nightlab normalises it against the `[spec.*]` fields (the same knob
declarations as `[search]`): a missing field takes its default, a number takes its field's
type (5.0 → 5 for an int field; a numeric string becomes a number), an out-of-range value
is clamped to the range and reported. An unknown field, a value of the wrong kind, or a
choice that is not offered is an error: the spec is rejected with the reason. Nested
objects are addressed by dotted names (`[spec."optim.lr"]` is `{"optim": {"lr": …}}`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nightlab import UserError
from nightlab.config import Config, Knob

MAX_BYTES = 1 << 20  # a training spec is a few lines of knobs
MAX_DEPTH = 32  # levels of nested objects and arrays
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_BRACKETS = re.compile(r"[^\[\]{}]")


class SpecError(UserError):
    """The lab's own training spec cannot run; the message names the field and the fix."""


@dataclass
class Normalized:
    spec: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # clamps and defaults applied
    errors: list[str] = field(default_factory=list)  # reasons to reject the spec

    def text(self) -> str:
        return json.dumps(self.spec, indent=2) + "\n"


def normalize_text(cfg: Config, text: str) -> Normalized:
    """Parse and normalise the spec file's content (see the module docstring); a spec over
    MAX_BYTES or nested deeper than MAX_DEPTH is an error before it is parsed."""
    name = cfg.trial.spec
    if why := _unparsable(text):
        return Normalized({}, errors=[f"{name} is refused: {why}"])
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer of 5000 digits
        return Normalized({}, errors=[f"{name} is not valid JSON: {str(exc)[:200]}"])
    if not isinstance(raw, dict):
        return Normalized({}, errors=[f"{name} must hold a JSON object, not {type(raw).__name__}"])
    return normalize(cfg.spec, raw, name or "spec")


def _unparsable(text: str) -> str | None:
    """Why `text` is too big or too deep to parse (None: it is not): the brackets outside
    strings are counted without parsing, so a hostile spec never reaches the recursion of
    json (or of this module)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return f"{size} bytes (a spec holds at most {MAX_BYTES})"
    brackets = _BRACKETS.sub("", _STRINGS.sub("", text))
    steps = (1 if ch in "[{" else -1 for ch in brackets)
    if max(itertools.accumulate(steps), default=0) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels of objects and arrays"
    return None


def normalize(fields: dict[str, Knob], raw: dict[str, Any], name: str = "spec") -> Normalized:
    out = Normalized({})
    try:
        flat = _flatten(raw)
    except ValueError as exc:
        out.errors.append(f"{name}: {exc}")
        return out
    for key in flat:
        if key not in fields:
            out.errors.append(
                f"{name}: unknown field {key!r} (declared: {', '.join(sorted(fields))}; "
                f'add [spec."{key}"] to nightlab.toml to allow it)'
            )
    values: dict[str, Any] = {}
    for key, knob in fields.items():
        if key not in flat:
            values[key] = knob.default
            out.notes.append(f"{key} missing: default {knob.default!r}")
            continue
        value, note, error = _coerce(knob, flat[key])
        if error:
            out.errors.append(f"{name}: {key}: {error}")
        else:
            values[key] = value
            if note:
                out.notes.append(f"{key}: {note}")
    if not out.errors:
        out.spec = _unflatten(values)
    return out


def _coerce(knob: Knob, value: Any) -> tuple[Any, str | None, str | None]:
    """(value, note, error) for one field."""
    if knob.kind == "categorical":
        if knob.violation(value) is None:  # the choice as declared: 64, never 64.0
            same = [c for c in knob.choices or [] if c == value and type(c) is not bool]
            return (same[0] if same and type(value) is not bool else value), None, None
        return None, None, f"{_short(value)} is not one of {knob.choices}"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None, None, f"{_short(value)} is not a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, None, f"{_short(value)} is not a number"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # a JSON integer beyond any float
        finite = False
    if not finite:
        return None, None, f"{str(value)[:40]} is not a finite number"
    note = None
    if knob.kind == "int" and value != round(value):
        note = f"{value!r} rounded to {round(value)} (an integer field)"
    value = int(round(value)) if knob.kind == "int" else float(value)
    low, high = knob.low, knob.high
    assert low is not None and high is not None  # a numeric knob has a range
    if value < low or value > high:
        clamped = low if value < low else high
        clamped = int(clamped) if knob.kind == "int" else float(clamped)
        note = f"{value!r} clamped to {clamped!r} (range {low}..{high})"
        value = clamped
    return value, note, None


def _short(value: Any) -> str:
    """`repr(value)`, at most ~80 characters of it (a reason is read, not a dump)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:70]}…({len(text)} characters)"


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        dotted = f"{prefix}{key}"
        inner = _flatten(value, dotted + ".") if isinstance(value, dict) else {dotted: value}
        for name, leaf in inner.items():  # an empty object adds nothing: its defaults apply
            if name in flat:
                raise ValueError(f"field {name!r} is given twice (nested and dotted)")
            flat[name] = leaf
    return flat


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def for_commit(cfg: Config, read: Callable[[str], str | None]) -> Normalized:
    """The normalised spec of the code at a commit (`read(path)` gives a file's content
    there, None when it is missing); raises SpecError when it cannot run."""
    name = cfg.trial.spec
    assert name is not None
    text = read(name)
    if text is None:
        raise SpecError(f'[trial] spec = "{name}" but the lab has no {name}: create it')
    normalized = normalize_text(cfg, text)
    if normalized.errors:
        raise SpecError("; ".join(normalized.errors))
    return normalized
