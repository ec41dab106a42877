"""Metric history of a running trial: printed `name=value` / `name: value` lines and the
JSON lines that `nightlab.log()` appends to `NIGHTLAB_METRICS`, read incrementally."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NUMBER = r"[-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_PAIR = re.compile(rf"(?<![\w.\-/])([A-Za-z_][\w.\-/]*)\s*[=:]\s*({_NUMBER})(?![\w:]|\.\w)", re.I)


def parse_line(line: str) -> dict[str, float]:
    """All `name=value` / `name: value` pairs of one printed line."""
    return {name: float(value) for name, value in _PAIR.findall(line)}


@dataclass
class _Tail:
    """New complete lines of a growing file since the last read."""

    path: Path
    offset: int = 0
    partial: str = ""

    def read(self, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        text = self.partial + chunk.decode("utf-8", errors="replace")
        lines = re.split(r"[\r\n]", text)
        self.partial = "" if final else lines.pop()
        return [ln for ln in lines if ln.strip()]


@dataclass
class MetricReader:
    """Follows stdout, stderr and metrics.jsonl of one trial folder."""

    trial_dir: Path
    objective: str
    history: list[dict[str, Any]] = field(default_factory=list)
    grew: bool = False  # new bytes arrived during the last read (for hang detection)
    logs: tuple[str, ...] = ("stdout.log", "stderr.log")
    metrics: str = "metrics.jsonl"

    def __post_init__(self) -> None:
        d = self.trial_dir
        self._text = [_Tail(d / name) for name in self.logs]
        self._json = _Tail(d / self.metrics)
        self._counts: dict[str, int] = {}

    def read(self, final: bool = False) -> list[dict[str, Any]]:
        """Read what arrived; return the new metric points."""
        before = [t.offset for t in (*self._text, self._json)]
        new: list[dict[str, Any]] = []
        for tail in self._text:
            for line in tail.read(final):
                values = parse_line(line)
                step = values.pop("step", None)
                for name, value in values.items():
                    new.append(self._point(name, value, step, "stdout"))
        for line in self._json.read(final):
            new.extend(self._json_points(line))
        self.grew = before != [t.offset for t in (*self._text, self._json)]
        self.history.extend(new)
        return new

    def _point(self, name: str, value: float, step: Any, source: str) -> dict[str, Any]:
        index = self._counts.get(name, 0)
        self._counts[name] = index + 1
        if isinstance(step, float) and math.isfinite(step):
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool) or abs(step) > 2**62:
            step = index  # no step, or one no store column could hold
        return {"name": name, "value": value, "step": step, "source": source}

    def _json_points(self, line: str) -> list[dict[str, Any]]:
        try:
            rec = json.loads(line)
            if rec.get("source") == "stdout":
                return []  # written back by nightlab at the end; stdout itself counts
            metrics = rec["metrics"]
            return [
                self._point(str(k), float(v), rec.get("step"), "log") for k, v in metrics.items()
            ]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            return []  # a torn or foreign line; the printed output still counts

    def values(self, name: str) -> list[float]:
        return [p["value"] for p in self.history if p["name"] == name]

    def last(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.history:
            out[p["name"]] = p["value"]
        return out

    def diverged(self, points: list[dict[str, Any]] | None = None) -> float | None:
        """The first non-finite objective value among `points` (default: the history)."""
        for p in self.history if points is None else points:
            if p["name"] == self.objective and not math.isfinite(p["value"]):
                return p["value"]
        return None

    def reduce(self, how: str, maximize: bool) -> float | None:
        vals = [v for v in self.values(self.objective) if math.isfinite(v)]
        if not vals:
            return None
        if how == "last":
            return vals[-1]
        return max(vals) if maximize else min(vals)
