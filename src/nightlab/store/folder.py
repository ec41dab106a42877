"""The canonical trial folder `.nightlab/trials/<id>/`: params.json, stdout.log,
stderr.log, metrics.jsonl, result.json, diff.patch, env.json (the record: the loop's), and
out/ (the trial's own: its params copy, the metrics it logs, its artifacts/)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import stat
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from nightlab.store import files, paths
from nightlab.store.paths import ARTIFACTS, DIFF, ENV, METRICS, OUT, PARAMS, RESULT


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)  # a trial settled after a crash may have none
    files.write_json(path, data)


@cache
def _environment() -> dict[str, Any]:
    """What a trial ran with (nightlab's interpreter, which trials find first on PATH)."""
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {
            d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]
        },
    }


def fingerprint(lab: Path, entries: list[str]) -> dict[str, str]:
    """A quick identity of each data path (`[trial] share`): a hash of every file's relative
    path, size and modification time, so a changed dataset shows in env.json."""
    out = {}
    for entry in entries:
        digest = hashlib.sha256()
        root = lab / entry
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            st = path.stat()
            digest.update(f"{path.relative_to(lab)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[entry] = f"sha256:{digest.hexdigest()[:16]} ({len(files)} files)"
    return out


def prepare(
    trial_dir: Path,
    params: dict[str, Any],
    diff: str,
    commit: str,
    data: dict[str, str] | None = None,
) -> None:
    (trial_dir / OUT / ARTIFACTS).mkdir(parents=True, exist_ok=True)  # the trial's to write
    write_json(trial_dir / PARAMS, params)
    write_json(trial_dir / OUT / PARAMS, params)  # the trial's copy: the record keeps its own
    files.write_atomic(trial_dir / DIFF, diff)
    write_json(trial_dir / ENV, {**_environment(), "git_sha": commit, "data": data or {}})


def collect(trial_dir: Path) -> list[str]:
    """Once a trial has ended: drop from its out/ whatever is not a regular file (a link
    must never lead a reader of the folder elsewhere), and take the MLflow run id it wrote
    into the record when it looks like one. Returns what was dropped."""
    out, dropped = trial_dir / OUT, []
    if out.is_symlink() or not out.is_dir():
        return dropped
    for folder, dirs, names, fd in os.fwalk(out, follow_symlinks=False):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                os.unlink(name, dir_fd=fd)
                dropped.append(os.path.relpath(os.path.join(folder, name), out))
    run_id = (files.read_regular(out / paths.MLFLOW_RUN_ID, 128) or b"").decode(errors="replace")
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", run_id.strip()):
        files.write_atomic(trial_dir / paths.MLFLOW_RUN_ID, run_id.strip())
    return dropped


def finish(trial_dir: Path, result: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """result.json, and metrics.jsonl rewritten as the whole history (printed and logged),
    each point with its time (`ts`, seconds) when it has one."""
    write_json(trial_dir / RESULT, result)
    lines = [
        json.dumps(
            {"step": p["step"], "metrics": {p["name"]: p["value"]}, "source": p["source"]}
            | ({"ts": p["ts"]} if p.get("ts") is not None else {})
        )
        for p in history
    ]
    files.write_atomic(trial_dir / METRICS, "".join(line + "\n" for line in lines))


def read_history(trial_dir: Path) -> list[dict[str, Any]]:
    """The metric history as `finish` wrote it (empty when the trial never finished); a
    point's `ts` is there when the folder has one (older folders have none)."""
    points = []
    try:
        for line in (trial_dir / METRICS).read_text().splitlines():
            rec = json.loads(line)
            for name, value in rec["metrics"].items():
                step = rec.get("step") or 0
                point = {"name": name, "value": value, "step": step,
                         "source": rec.get("source", "log")}  # fmt: skip
                if isinstance(rec.get("ts"), int | float) and math.isfinite(rec["ts"]):
                    point["ts"] = rec["ts"]
                points.append(point)
    except (FileNotFoundError, ValueError, KeyError, AttributeError):
        pass
    return points
