"""A coding agent's own settings in its box: a per-run copy, never the real folder.

The CLIs need their settings (`~/.codex`, `~/.claude`, `~/.claude.json`, `~/.aider`, or the
folder CODEX_HOME / CLAUDE_CONFIG_DIR names) to read a login and to write sessions. Were the
real folder writable, an agent could plant what runs outside any sandbox the next time the
user starts that CLI (a hook in `~/.claude/settings.json`, a `notify` command or an MCP
server in `~/.codex/config.toml`). So the box shows a copy at the same place: the top-level
files of the folder (its settings and login, each up to 1 MB), its sub-folders empty
(sessions and history are not the agent's to read); what the agent writes there is dropped
with the copy after the run. A sub-folder holding the CLI's own program (an install in
`~/.claude/local`) is shown read-only as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

AGENT_HOMES = {"codex": (".codex",), "claude": (".claude", ".claude.json"), "aider": (".aider",)}
# the variables that move a coding agent's settings folder out of $HOME
AGENT_HOME_VARS = {"codex": "CODEX_HOME", "claude": "CLAUDE_CONFIG_DIR"}
MAX_FILE = 1 << 20  # a settings or login file; a bigger one is history, not copied


def places(name: str, lab: Path, hidden: list[Path]) -> list[Path]:
    """Where agent `name` keeps its settings: its entries in $HOME, or the folder its
    variable names instead (unless that folder holds $HOME or the lab, or lies inside a
    hidden one: then its $HOME entries). Folders missing in $HOME are made (mode 700): in
    its box nothing can be made there (aider stops without ~/.aider)."""
    home = os.environ.get("HOME")
    var = AGENT_HOME_VARS.get(name)
    moved = os.path.realpath(os.environ[var]) if var and os.environ.get(var) else None
    entries = [Path(home, e) for e in AGENT_HOMES.get(name, ())] if home else []
    if moved and os.path.isdir(moved):
        holds = any(p.is_relative_to(moved) for p in [Path(home or "/"), *hidden])
        if not holds and not any(Path(moved).is_relative_to(p) for p in hidden):
            return [*entries, Path(moved)]
    if home and os.path.isdir(home) and not moved:
        for entry in entries:
            if entry.suffix != ".json" and not os.path.lexists(entry):
                try:
                    entry.mkdir(mode=0o700)
                except OSError:
                    pass  # a read-only $HOME: the agent fails saying what it misses
    return entries


def copy(places: list[Path], into: Path, program: Path | None) -> list[tuple[Path, Path, bool]]:
    """Copies of `places` under `into`: (source for the box, where it appears, writable).
    A sub-folder that holds `program` appears as it is, read-only."""
    out: list[tuple[Path, Path, bool]] = []
    if not places:
        return out
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i, place in enumerate(places):
        if place.is_symlink() or not place.exists():
            continue  # a link would be bound where it leads; nothing there: nothing to show
        mirror = into / f"{i}-{place.name.lstrip('.') or 'settings'}"
        if place.is_file():
            if place.stat().st_size <= MAX_FILE:
                shutil.copyfile(place, mirror)
                os.chmod(mirror, 0o600)
                out.append((mirror, place, True))
            continue
        mirror.mkdir(mode=0o700)
        keep = []
        for child in sorted(place.iterdir()):
            if child.is_symlink():
                continue
            if child.is_dir():
                (mirror / child.name).mkdir(mode=0o700)
                if program is not None and program.is_relative_to(child):
                    keep.append(child)
            elif child.is_file() and child.stat().st_size <= MAX_FILE:
                shutil.copyfile(child, mirror / child.name)
                os.chmod(mirror / child.name, 0o600)
        out.append((mirror, place, True))
        out += [(child, child, False) for child in keep]
    return out
