"""A running trial's recent curve of one metric, for the dashboard: the points it printed
(`name=value` lines on stdout/stderr) or logged (`nightlab.log()`, out/metrics.jsonl), read
from a bounded tail of each file whatever their size. A trial controls its output: values
that are not finite numbers are dropped, names are matched exactly, and a line the tail cut
(a 50 MB line) is not read at all."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nightlab.store import files, paths
from nightlab.trials.metrics import LOGS, METRICS, parse_line

CURVE_BYTES = 256 << 10  # the end of each file read
CURVE_POINTS = 500  # the last points kept


def recent(
    trial_dir: Path, metric: str, *, max_bytes: int = CURVE_BYTES, max_points: int = CURVE_POINTS
) -> dict[str, Any]:
    """{"x": steps, "y": values, "source": where they came from}: the last `max_points`
    points of `metric`. Logged points (metrics.jsonl) win over printed ones; x is the
    points' steps when every point has one and they never go back, else their order."""
    folder = Path(trial_dir)
    points = _logged(_lines(folder / paths.OUT / METRICS, max_bytes), metric)
    source = "metrics.jsonl"
    if not points:
        source = "stdout"
        points = []
        for name in LOGS:
            points += _printed(_lines(folder / name, max_bytes), metric)
    points = points[-max_points:]
    steps = [s for s, _ in points]
    ordered = all(s is not None for s in steps) and all(
        a <= b for a, b in zip(steps, steps[1:], strict=False)  # type: ignore[operator]
    )
    xs = steps if ordered else list(range(len(points)))
    return {"x": xs, "y": [v for _, v in points], "source": source if points else None}


def _lines(path: Path, max_bytes: int) -> list[str]:
    """The complete lines of the file's last `max_bytes` (the first is dropped when the tail
    began inside it); [] when it is missing or not a plain file."""
    text = files.tail(path, max_bytes=max_bytes)
    if not text:
        return []
    lines = text.split("\n")
    try:
        if path.stat().st_size > max_bytes:
            lines = lines[1:]
    except OSError:
        return []
    return lines


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _printed(lines: list[str], metric: str) -> list[tuple[float | None, float]]:
    out = []
    for line in lines:
        if metric not in line:
            continue
        pairs = parse_line(line)
        value = _finite(pairs.get(metric))
        if value is not None:
            out.append((_finite(pairs.get("step")), value))
    return out


def _logged(lines: list[str], metric: str) -> list[tuple[float | None, float]]:
    out = []
    for line in lines:
        if metric not in line:
            continue
        try:
            rec = json.loads(line)
            if rec.get("source") == "stdout":
                continue  # a printed line the loop copied here: read from the log itself
            value = _finite(rec["metrics"][metric])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
        if value is not None:
            out.append((_finite(rec.get("step")), value))
    return out
