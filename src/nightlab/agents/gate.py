"""The quality gate: a decision runs whole or not at all. A rejected decision becomes a
`wait` with its reasons recorded.

Whatever `[trial] editable` says, an edit never touches nightlab's own files (the
configuration, the lab's brief and the agents' instructions, the state folder, git's
folder), never a path git or the file system would refuse at checkout (too long, control
or invisible characters, pathspec magic), and never anything but a regular file: not a
symlink of the base commit, a folder, or a path below a file."""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from nightlab.agents.decision import Decision
from nightlab.config import CONFIG_NAME, Config, matches

MIN_RATIONALE = 12
TRIVIAL = {"try", "test", "run", "n/a", "na", "none", "because", "todo", "idk"}
MAX_NAME_BYTES = 255  # one path component (NAME_MAX of every common file system)
MAX_PATH_BYTES = 1024  # the whole lab-relative path
REGULAR = ("100644", "100755")  # git's modes of a regular file


@dataclass
class GateResult:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # new content of edited files
    notes: list[str] = field(default_factory=list)  # what admission changed (spec clamps)


def check(
    decision: Decision,
    cfg: Config,
    read: Callable[[str], str | None],
    mode: Callable[[str], str | None] | None = None,
) -> GateResult:
    """Judge `decision`; `read(path)` gives an editable file's content at the base (or None)
    and `mode(path)` its git mode there (None when absent; not given: not checked)."""
    reasons: list[str] = []
    text = decision.rationale.strip()
    if len(text) < MIN_RATIONALE or text.lower().strip(".!") in TRIVIAL:
        reasons.append(f"rationale too thin ({text!r}): say why this, now")
    files: dict[str, str] = {}
    if decision.action == "run":
        reasons += cfg.param_violations(decision.params)
        for edit in decision.edits:
            if not matches(edit.file, cfg.editable_files):
                reasons.append(f"{_show(edit.file)} is not editable "
                               f"(allowed: {cfg.editable_files})")  # fmt: skip
                continue
            if why := refused(edit.file, cfg) or _not_regular(edit.file, mode):
                reasons.append(why)
                continue
            current = files.get(edit.file)
            if current is None:
                current = read(edit.file)
            if not edit.search:
                files[edit.file] = edit.replace
            elif current is None:
                reasons.append(f"{edit.file!r} does not exist; create it with an empty search")
            elif (n := current.count(edit.search)) != 1:
                where = "not found" if n == 0 else f"found {n} times"
                reasons.append(f"edit of {edit.file!r}: search text {where} (must match once)")
            else:
                files[edit.file] = current.replace(edit.search, edit.replace, 1)
        reasons += _file_and_folder(list(files))
    elif decision.params or decision.edits:
        reasons.append(f"action {decision.action!r} carries params/edits; only `run` may")
    if decision.action == "research" and not (decision.query or "").strip():
        reasons.append("a `research` decision needs a `query`: the papers to look for")
    elif decision.query and decision.action != "research":
        reasons.append(f"action {decision.action!r} carries a query; only `research` may")
    return GateResult(accepted=not reasons, reasons=reasons, files={} if reasons else files)


def refused(path: str, cfg: Config) -> str | None:
    """Why no decision may write the lab-relative `path`, whatever `editable` says (None:
    it may, if editable)."""
    name = _show(path)
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name} is refused: it is not valid Unicode text (a lone surrogate)"
    if size > MAX_PATH_BYTES:
        return f"{name} is refused: the path is {size} bytes long (at most {MAX_PATH_BYTES})"
    for part in path.split("/"):
        if (n := len(part.encode("utf-8"))) > MAX_NAME_BYTES:
            return (
                f"{name} is refused: a file or folder name of {n} bytes "
                f"(at most {MAX_NAME_BYTES}: the file system cannot create it)"
            )
    if bad := [ch for ch in path if ch == "\\" or unicodedata.category(ch) in ("Cc", "Cf")]:
        return (
            f"{name} is refused: it holds {ascii(bad[0])} (control, invisible or "
            "backslash characters are never part of a lab file's name)"
        )
    if path.startswith(":"):
        return f"{name} is refused: a leading ':' is git pathspec magic"
    parts = [p.lower().rstrip(" .") for p in path.split("/")]
    if any(p in (".git", "git~1") for p in parts):
        return f"{name} is refused: git's own folder is never edited"
    if ".nightlab" in parts:
        return f"{name} is refused: nightlab's state folder (.nightlab/) is never edited"
    if any(PurePosixPath(path).is_relative_to(t) for t in _test_data(cfg)):
        return (
            f"{name} is refused: it is held-out test data ([objective] test_paths), never "
            "read or edited by a decision"
        )
    lowered = path.lower()
    if lowered == CONFIG_NAME:
        return (
            f"{name} is refused: {CONFIG_NAME} is nightlab's configuration, never edited "
            "by a decision (whatever [trial] editable says)"
        )
    if lowered in _instructions(cfg):
        return (
            f"{name} is refused: the lab's brief and the agents' instructions are read into "
            "every prompt and never edited by a decision (whatever [trial] editable says)"
        )
    return None


def _test_data(cfg: Config) -> list[str]:
    """The lab-relative `[objective] test_paths`, normalised ("data/test/" → "data/test")."""
    paths = (posixpath.normpath(t) for t in cfg.objective.test_paths if t.strip())
    return [t for t in paths if not t.startswith("/")]


def _instructions(cfg: Config) -> set[str]:
    """Lab-relative paths (lower case) of what the agents read as instructions: the brief
    ([lab] brief), the missions ([agents] *_mission, mission_file, ROLE_MISSION.md)."""
    agents = cfg.agents
    named = [cfg.lab.brief, agents.mission_file, agents.worker_mission, agents.mentor_mission]
    out = {"worker_mission.md", "mentor_mission.md"}
    for value in named:
        if value:
            out.add(posixpath.normpath(value.replace("\\", "/")).lower())
    return out


def _not_regular(path: str, mode: Callable[[str], str | None] | None) -> str | None:
    """Why `path` cannot be written as a regular file on the base commit (None: it can)."""
    if mode is None:
        return None
    if (own := mode(path)) not in (None, *REGULAR):
        why = {
            "120000": "a symlink in the base commit: writing text into its blob would point "
            "it anywhere",
            "040000": "a folder in the base commit: only files are edited",
            "160000": "a submodule in the base commit",
        }.get(own or "", "not a file git can take text for")
        return f"{_show(path)} is not a regular file ({own}): it is {why}"
    parts = path.split("/")
    for n in range(1, len(parts)):  # from the top, as deep as the base's folders go
        parent = "/".join(parts[:n])
        if (above := mode(parent)) is None:
            return None  # a new folder: nothing below it exists either
        if above != "040000":
            kind = {"120000": "a symlink", "160000": "a submodule"}.get(above, "a file")
            return (
                f"the edit of {_show(path)} cannot be applied: its parent {parent!r} is "
                f"{kind} in the base commit, not a folder"
            )
    return None


def _file_and_folder(paths: list[str]) -> list[str]:
    """Edits that would make one path both a file and a folder."""
    edited = set(paths)
    return [
        f"the edit of {_show(p)} cannot be applied: another edit of this decision writes "
        f"{parent!r} as a file"
        for p in paths
        for parent in ["/".join(p.split("/")[:n]) for n in range(1, p.count("/") + 1)]
        if parent in edited
    ]


def _show(path: str) -> str:
    """`path` quoted for a reason, at most ~80 characters of it."""
    return repr(path) if len(path) <= 80 else f"{path[:60]!r}…({len(path)} characters)"
