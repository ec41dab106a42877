"""Links from a report to what stands behind each candidate: its run in the MLflow UI (when
`[tracking] ui_url` says where that is), its trial's logs and its diff.

File links are relative, from the report's folder to the trial's folder in the lab's state
(`../../trials/<id>/stdout.log`), so the report folder works wherever the lab is opened. A
file is linked only where nightlab writes it: a regular file at `.nightlab/trials/<id>/<name>`,
reached through no symlink. A trial folder without its `diff.patch` gets one written into the
report folder (`diffs/trial-<id>.patch`, from git, cut at `DIFF_BYTES`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.report.data import Night, ReportError
from nightlab.report.doc import LOCAL_LINK
from nightlab.store.files import write_atomic
from nightlab.store.paths import DIFF, STDERR, STDOUT
from nightlab.tracking.ui import run_url
from nightlab.trials.workspace import diff_text

DIFFS = "diffs"
DIFF_BYTES = 256 << 10
FILES = (("stdout", STDOUT), ("stderr", STDERR), ("diff", DIFF))


@dataclass(frozen=True)
class Link:
    label: str
    href: str

    def markdown(self) -> str:
        return f"[{self.label}]({self.href})"


def trial_links(night: Night, trial: dict[str, Any], out: Path) -> list[Link]:
    """The MLflow run, logs and diff of one trial, for a report written into `out`."""
    trial_id = int(trial["id"])  # the store's integer key: never a path
    links = []
    if url := run_url(night.cfg.tracking.ui_url, trial.get("mlflow_run_id")):
        links.append(Link("MLflow", url))
    state = night.state_dir.resolve()
    for label, name in FILES:
        if href := state_file_link(state, f"trials/{trial_id}/{name}", out):
            links.append(Link(label, href))
    has_patch = (night.paths.trial(trial_id) / DIFF).is_file()
    if not has_patch and (href := _git_diff(night, trial, out)):
        links.append(Link("diff", href))
    return links


def state_file_link(state: Path, rel: str, out: Path) -> str | None:
    """A relative link from `out` to the file `state`/`rel`, when that is a non-empty regular
    file exactly there: no `..`, no symlink on the way, nothing outside the state folder."""
    state = state.resolve()
    expected = state.joinpath(*rel.split("/"))
    try:
        found = expected.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if found != expected or not found.is_file() or found.stat().st_size == 0:
        return None
    return _relative(found, out)


def _relative(path: Path, out: Path) -> str:
    href = Path(os.path.relpath(path, out.resolve())).as_posix()
    if not LOCAL_LINK.fullmatch(href):  # the report's HTML renders only these shapes as links
        raise ValueError(f"a report link {href!r} has none of the shapes the HTML renders")
    return href


def _git_diff(night: Night, trial: dict[str, Any], out: Path) -> str | None:
    """`diffs/trial-<id>.patch`: the trial's code against the night's base commit, from git;
    None when git cannot tell or the code is unchanged."""
    base, commit = night.meta.get("base_commit"), trial.get("commit")
    if not base or not commit:
        return None
    text = diff_text(night.lab, str(base), str(commit), DIFF_BYTES)
    if not text:
        return None
    folder = _diffs(out)
    folder.mkdir(exist_ok=True)
    path = folder / f"trial-{int(trial['id'])}.patch"
    write_atomic(path, text)
    return _relative(path, out)


def clear(out: Path) -> None:
    """Remove the diffs an earlier report wrote into `out`: a diff not written now must not
    stay linked-looking beside the new report."""
    for stale in sorted(_diffs(out).glob("trial-*.patch")):
        stale.unlink()


def _diffs(out: Path) -> Path:
    folder = out / DIFFS
    if folder.is_symlink():  # writing through it would write outside the report folder
        raise ReportError(f"{folder} is a symlink; remove it and write the report again")
    return folder
