"""What the dashboard's pages show, as plain data read through the `Lab` API and the store's
read queries (store/read.py, store/pages.py); no web framework here."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

from nightlab.lab.api import Lab
from nightlab.store import pages, pruned, read
from nightlab.store.files import read_regular, tail
from nightlab.store.paths import DIFF, STDERR, STDOUT
from nightlab.tracking.ui import run_url

DIFF_BYTES = 1 << 20  # a bigger diff.patch is shown cut
LOG_LINES = 200
NIGHT_NAME = re.compile(r"^[\w-][\w.-]{0,99}$")  # never "." or ".."


def settings(lab: Lab) -> dict[str, Any]:
    """The few nightlab.toml values the pages show (read as they are: no validation)."""
    try:
        raw = tomllib.loads((lab.path / "nightlab.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    objective, trial, agents = (raw.get(k, {}) for k in ("objective", "trial", "agents"))
    budget = raw.get("budget", {})
    return {
        "metric": objective.get("metric", "objective"),
        "direction": objective.get("direction", "maximize"),
        "budget_seconds": trial.get("budget_seconds"),
        "mentor": agents.get("mentor"),
        "max_trials": budget.get("max_trials"),
    }


def overview(lab: Lab, with_scatter: bool = True) -> dict[str, Any]:
    """The night at a glance: status, run, running trials with their log tails, the last
    finished trials and (unless `with_scatter` is false) the scatter's data."""
    st = lab.status()
    cfg = settings(lab)
    out: dict[str, Any] = {"status": st, "cfg": cfg, "run": None, "running": [], "recent": [],
                           "scatter": None, "now": time.time(), "time_left_s": None,
                           "worker": None, "max_trials": cfg["max_trials"],
                           "pruning": None}  # fmt: skip
    if not lab.db.is_file() or st["run"] is None:
        return out
    with read.connect(lab.db) as conn:
        out["run"] = pages.run_row(conn)
        out["running"] = pages.running(conn)
        out["recent"] = pages.recent(conn)
        out["pruning"] = pruned.figures(conn, budget_seconds(cfg))
        if with_scatter:
            out["scatter"] = pages.scatter(conn)
    for t in out["running"]:
        t["elapsed_s"] = out["now"] - t["started_at"]
        t["log"] = log_tail(lab, t["id"], 8)
    run = out["run"]
    deadline = run and run.get("deadline_at")
    out["time_left_s"] = max(0.0, deadline - out["now"]) if deadline else None
    opts = (run or {}).get("options", {})
    out["max_trials"] = opts.get("max_trials") or cfg["max_trials"]
    out["worker"] = opts.get("worker")
    return out


def budget_seconds(cfg: dict[str, Any]) -> float:
    """`[trial] budget_seconds` as the file says (read on every push: no validation), else
    its default."""
    from nightlab.config import TrialSection

    given = cfg.get("budget_seconds")
    if pruned._finite(given) and given > 0:  # inf would break the page's JSON
        return float(given)
    return float(TrialSection.model_fields["budget_seconds"].default)


def _finite_curve(x: list, y: list) -> dict[str, list]:
    """Only the points whose step and value are finite numbers (NaN would make the page's
    JSON invalid; ±inf cannot be drawn)."""
    keep = [(a, b) for a, b in zip(x, y, strict=False) if pruned._finite(a) and pruned._finite(b)]
    return {"x": [a for a, _ in keep], "y": [b for _, b in keep]}


def pruned_view(lab: Lab, t: dict[str, Any]) -> dict[str, Any] | None:
    """A pruned trial's record and its objective curve with the baseline envelope."""
    if t["status"] != "pruned":
        return None
    metric = str(settings(lab)["metric"])
    with read.connect(lab.db) as conn:
        env = pruned.baseline_envelope(conn, lab.paths.trial, metric)
    mine = pruned.curve(lab.paths.trial(t["id"]), metric)
    ys = dict(zip(mine["x"], mine["y"], strict=False))
    at = {x: i for i, x in enumerate(env["x"])}
    xs = sorted(set(ys) | set(at))

    def col(key: str) -> list[float | None]:
        return [env[key][at[x]] if x in at else None for x in xs]

    chart = {"metric": metric, "x": xs, "y": [ys.get(x) for x in xs], "lo": col("lo"),
             "hi": col("hi"), "mean": col("mean"), "points": len(mine["x"])}  # fmt: skip
    return {"record": pruned.record(t.get("pruning")), "metric": metric, "chart": chart}


def log_tail(lab: Lab, trial_id: int, lines: int = LOG_LINES) -> str:
    """The end of a trial's stdout and stderr (redacted, as the store keeps logs)."""
    from nightlab.store.redact import redact

    folder = lab.paths.trial(trial_id)
    parts = []
    for name in (STDOUT, STDERR):
        text = tail(folder / name, lines)
        if text.strip():
            parts.append(f"--- {name} ---\n{text}")
    return redact("\n".join(parts))


def diff_lines(lab: Lab, trial_id: int) -> tuple[list[tuple[str, str]], bool]:
    """The trial's diff.patch as (css class, line) pairs, and whether it was cut."""
    raw = _head(lab.paths.trial(trial_id) / DIFF, DIFF_BYTES + 1)
    if raw is None:
        return [], False
    cut = len(raw) > DIFF_BYTES
    out = []
    for line in raw[:DIFF_BYTES].decode("utf-8", "replace").splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = ""
        out.append((kind, line))
    return out, cut


def _head(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of a regular file reached without a link at its name (a link
    or a pipe a trial planted is not read); never more, however big the file."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.pread(fd, size, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def trial_page(lab: Lab, trial_id: int) -> dict[str, Any] | None:
    from nightlab.store.folder import read_history

    if not lab.db.is_file():
        return None
    with read.connect(lab.db) as conn:
        t = pages.trial(conn, trial_id)
        if t is None:
            return None
        events = pages.trial_events(conn, trial_id)
    keys = sorted(set(t["params"] or {}) | set(t["base_params"] or {}))
    params = [(k, (t["base_params"] or {}).get(k), (t["params"] or {}).get(k)) for k in keys]
    diff, cut = diff_lines(lab, trial_id)
    curves: dict[str, dict[str, list]] = {}
    for p in read_history(lab.paths.trial(trial_id))[:20000]:
        c = curves.setdefault(str(p["name"])[:100], {"x": [], "y": []})
        c["x"].append(p["step"])
        c["y"].append(p["value"])
    shown = {name: _finite_curve(c["x"], c["y"]) for name, c in list(curves.items())[:8]}
    return {"t": t, "params": params, "diff": diff, "diff_cut": cut, "events": events,
            "log": log_tail(lab, trial_id), "curves": shown, "pruned": pruned_view(lab, t),
            "mlflow": mlflow_link(lab, t.get("mlflow_run_id"))}  # fmt: skip


def mlflow_link(lab: Lab, run_id: str | None) -> str | None:
    """The trial's run in the MLflow UI, when `[tracking] ui_url` says where that is."""
    return run_url(lab.config.tracking.ui_url, run_id)


def reports(lab: Lab) -> list[dict[str, Any]]:
    """Past reports, newest first (folders of .nightlab/reports with a report.html)."""
    folder = lab.paths.reports
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        page = entry / "report.html"
        if NIGHT_NAME.match(entry.name) and not entry.is_symlink() and page.is_file():
            found.append({"night": entry.name, "mtime": page.stat().st_mtime})
    return sorted(found, key=lambda r: r["mtime"], reverse=True)


def report_html(lab: Lab, night: str) -> bytes | None:
    if not NIGHT_NAME.match(night):
        return None
    folder = lab.paths.reports / night
    if folder.is_symlink():
        return None
    return read_regular(Path(folder) / "report.html", 64 << 20)


STORY_PAGE = 100


def story(lab: Lab, page: int) -> tuple[list[dict[str, Any]], int]:
    if not lab.db.is_file():
        return [], 0
    with read.connect(lab.db) as conn:
        return pages.story_page(conn, page, STORY_PAGE)


def notes(lab: Lab) -> dict[str, Any]:
    """TODOs, workpad notes and mentor notes (the latest of each)."""
    if not lab.db.is_file():
        return {"todos": [], "workpad": [], "mentor": []}
    with read.connect(lab.db) as conn:
        todos, entries = pages.todos(conn), pages.notes(conn)
    return {"todos": todos, "workpad": [n for n in entries if n["section"] != "mentor"],
            "mentor": [n for n in entries if n["section"] == "mentor"]}  # fmt: skip


def live_curve(lab: Lab, trial_id: int) -> dict[str, Any] | None:
    """The objective's recent points of trial `trial_id` as it prints them (a bounded tail of
    its output: trials/curve.py), for the running trials' live curves; None: no such trial."""
    from nightlab.trials import curve

    if not lab.db.is_file():
        return None
    with read.connect(lab.db) as conn:
        row = conn.execute("SELECT status FROM trials WHERE id = ?", (trial_id,)).fetchone()
    if row is None:
        return None
    metric = str(settings(lab)["metric"])
    return {"trial": trial_id, "metric": metric, "status": row[0],
            **curve.recent(lab.paths.trial(trial_id), metric)}  # fmt: skip
