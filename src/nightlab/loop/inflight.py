"""What the worker is told of the trials running while it plans: each one's hypothesis,
parameters and the change it makes (the files, their line counts and the start of its
diff, all bounded), so that it does not propose the same thing again."""

from __future__ import annotations

from typing import Any

from nightlab.loop.night import Night
from nightlab.store import queries, read
from nightlab.trials.workspace import Workspace, WorkspaceError

MAX_TRIALS = 8  # more slots than this: the rest are named only
MAX_FILES = 12  # files listed per trial
MAX_DIFF_CHARS = 1200  # the diff shown of one trial
TOTAL_DIFF_CHARS = 3000  # of all together: more trials, less of each
MAX_HYPOTHESIS = 300


def describe(night: Night, flights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`flights` (Slots.in_flight(): trial and kind) with what each trial changes."""
    ids = [f["trial"] for f in flights]
    with read.connect(night.store.path) as conn:
        rows = {r["id"]: r for r in queries.in_flight(conn, ids)}
    share = min(MAX_DIFF_CHARS, TOTAL_DIFF_CHARS // max(1, min(len(flights), MAX_TRIALS)))
    out = []
    for n, flight in enumerate(flights):
        entry = dict(flight)
        row = rows.get(flight["trial"])
        if row is not None and n < MAX_TRIALS:
            entry["hypothesis"] = (row["hypothesis"] or "")[:MAX_HYPOTHESIS]
            entry["params"] = row["params"]
            entry.update(changes(night.ws, row["base_commit"], row["commit"], share))
        out.append(entry)
    return out


def changes(
    ws: Workspace, base: str | None, commit: str | None, chars: int = MAX_DIFF_CHARS
) -> dict[str, Any]:
    """{"changes": [{file, added, removed}], "diff": the diff's first `chars`} of `commit`
    against `base` (the best it was admitted on), lab-relative."""
    if not base or not commit or base == commit:
        return {"changes": []}
    relative = [f"--relative={ws.prefix}"] if ws.prefix else []
    try:
        stat = ws.git("diff", "--numstat", *relative, base, commit) or ""
        diff = ws.git("diff", "-U1", *relative, base, commit, strip=False) or ""
    except WorkspaceError:  # a commit git no longer has: say nothing of it
        return {}
    files = []
    for line in stat.splitlines():
        added, removed, name = (line.split("\t", 2) + ["", ""])[:3]
        files.append({"file": name, "added": added, "removed": removed})
    shown = files[:MAX_FILES]
    if len(files) > MAX_FILES:
        shown.append({"file": f"… {len(files) - MAX_FILES} more", "added": "", "removed": ""})
    diff = "".join(  # the ---/+++ lines name the files: git's own header lines say no more
        line for line in diff.splitlines(keepends=True)
        if not line.startswith(("diff --git ", "index "))
    )  # fmt: skip
    if len(diff) > chars:
        diff = diff[:chars].rsplit("\n", 1)[0] + "\n… (cut)"
    return {"changes": shown, "diff": diff.rstrip("\n")}
