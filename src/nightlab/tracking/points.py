"""What a trial's record becomes in MLflow: keys MLflow accepts (a trial's names are
hostile input), metric points with their own steps and times."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from nightlab.store.redact import redact

MAX_KEY = 250  # MLflow's longest metric, param or tag key
BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # MLflow's allowed set, negated
INT64 = 2**63 - 1
MAX_MS = 2**53  # a time past any real one (ms since 1970) is no time


def mlflow_key(name: Any) -> str | None:
    """`name` as a key MLflow accepts (its characters, no `.`/`..` path segments, at most
    MAX_KEY characters; a cut name ends with a hash of the whole, so two stay apart), secrets
    redacted; None when nothing usable is left."""
    key = BAD_KEY_CHARS.sub("_", redact(str(name)))
    key = "/".join({".": "_", "..": "__"}.get(part, part) for part in key.split("/") if part)
    if key.startswith(".."):
        key = "_" + key[1:]
    if len(key) > MAX_KEY:
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        key = key[: MAX_KEY - 9].rstrip("/") + "-" + digest
    return key if key.strip() else None


def metric_points(history: list[dict[str, Any]], ts: int) -> tuple[list[Any], dict[str, Any]]:
    """MLflow metrics for a trial's history, and the names changed ({name: key}) or skipped
    ({name: None}); points that are not finite numbers at an int64 step are left out. Each
    point keeps its own time (`ts`, seconds, see MetricReader); one without (a folder from
    before nightlab kept it) gets `ts` (ms: the trial's end)."""
    from mlflow.entities import Metric

    keys: dict[str, str | None] = {}
    metrics, seen = [], set()
    for p in history:
        name, value, step = p.get("name"), p.get("value"), p.get("step") or 0
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, step)):
            continue
        if not (math.isfinite(value) and math.isfinite(step) and abs(step) <= INT64):
            continue
        if name not in keys:
            keys[name] = mlflow_key(name)
        key, at = keys[name], point_ms(p.get("ts"), ts)
        if key is not None and (key, int(step), float(value), at) not in seen:
            seen.add((key, int(step), float(value), at))
            metrics.append(Metric(key, float(value), at, int(step)))
    changed = {str(n)[:300]: k for n, k in keys.items() if k != n}
    return metrics, changed




def point_ms(ts: Any, default: int) -> int:
    """A point's time in ms: its `ts` (seconds) when a finite number within MAX_MS, else
    `default`."""
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        if 0 < ts * 1000 < MAX_MS:
            return int(ts * 1000)
    return default
