"""The canonical trial folder `.nightlab/trials/<id>/`: params.json, stdout.log,
stderr.log, metrics.jsonl, result.json, diff.patch, env.json and artifacts/."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from nightlab.store import files
from nightlab.store.paths import ARTIFACTS, DIFF, ENV, METRICS, PARAMS, RESULT


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
    (trial_dir / ARTIFACTS).mkdir(parents=True, exist_ok=True)
    write_json(trial_dir / PARAMS, params)
    files.write_atomic(trial_dir / DIFF, diff)
    write_json(trial_dir / ENV, {**_environment(), "git_sha": commit, "data": data or {}})


def finish(trial_dir: Path, result: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """result.json, and metrics.jsonl rewritten as the whole history (printed and logged)."""
    write_json(trial_dir / RESULT, result)
    lines = [
        json.dumps({"step": p["step"], "metrics": {p["name"]: p["value"]}, "source": p["source"]})
        for p in history
    ]
    files.write_atomic(trial_dir / METRICS, "".join(line + "\n" for line in lines))


def read_history(trial_dir: Path) -> list[dict[str, Any]]:
    """The metric history as `finish` wrote it (empty when the trial never finished)."""
    points = []
    try:
        for line in (trial_dir / METRICS).read_text().splitlines():
            rec = json.loads(line)
            for name, value in rec["metrics"].items():
                step = rec.get("step") or 0
                points.append(
                    {"name": name, "value": value, "step": step, "source": rec.get("source", "log")}
                )
    except (FileNotFoundError, ValueError, KeyError, AttributeError):
        pass
    return points
