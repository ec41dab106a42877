"""The README documents every config key, command and executor kind that exists, its code
map names every room, and the tests it points to exist."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from nightlab.config import EXECUTORS, Config, Knob
from nightlab.lab.cli import app

REPO = Path(__file__).parents[1]
README = (REPO / "README.md").read_text()
LINES = README.splitlines()
ROOMS = ("config", "ratchet", "store", "tracking", "trials", "agents", "report", "loop", "lab")


def test_every_config_key_is_in_the_reference():
    missing = []
    for section, field in Config.model_fields.items():
        model = field.annotation
        if section in ("search", "spec"):
            keys = [f"[{section}.NAME] {k}" for k in Knob.model_fields]
        elif section == "search_settings":  # the plain keys of [search]
            keys = [f"[search] {k}" for k in model.model_fields]
        elif isinstance(model, type) and issubclass(model, BaseModel):
            keys = [f"[{section}] {k}" for k in model.model_fields]
        else:
            continue
        for key in keys:
            section_part, name = key.split(" ")
            if f"`{key}`" not in README and not (
                section in ("search", "spec") and f"`{section_part} " in README and name in README
            ):
                missing.append(key)
    assert missing == []


def test_every_command_is_in_the_cli_reference():
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert len(names) >= 9
    assert [n for n in names if f"`nightlab {n}" not in README] == []


def builtin_executor_kinds() -> list[str]:
    """The kinds config.py's [executor] section accepts without a plugin."""
    assert EXECUTORS, "config.EXECUTORS names no built-in executor"
    return list(EXECUTORS)


def section_table(heading: str) -> tuple[int, list[str]]:
    """(first line number, lines) of the first table under the README heading `heading`."""
    start = next(i for i, line in enumerate(LINES) if line.strip() == heading)
    first, table = 0, []
    for number, line in enumerate(LINES[start + 1 :], start + 2):
        if line.startswith("|"):
            first = first or number
            table.append(line)
        elif table or line.startswith("#"):
            break
    assert table, f"README.md has no table under {heading!r}"
    return first, table


def test_every_executor_kind_is_in_the_concepts_table():
    first, table = section_table("## Concepts")
    text = "\n".join(table)
    kinds = builtin_executor_kinds()
    missing = [k for k in kinds if f"`{k}`" not in text and f'"{k}"' not in text]
    assert not missing, (
        f"README.md's Concepts table (lines {first}-{first + len(table) - 1}) does not name "
        f"the executor kind(s) {missing}; the built-in kinds are {kinds}"
    )


def code_map() -> tuple[int, str]:
    """(line number, text) of the README's code map: the section headed "The code"."""
    match = re.search(r"^#+ The code\b.*?\n(.*?)(?=^#|\Z)", README, re.M | re.S)
    assert match, 'README.md has no code map (a section headed "The code")'
    return README[: match.start()].count("\n") + 1, match.group(1)


def names_room(text: str, room: str) -> bool:
    """`room` in backticks (`store`, `store/`, `config.py`), or a line that starts with it."""
    name = rf"{room}(?:/|\.py)?"
    return bool(
        re.search(rf"`(?:src/nightlab/|nightlab/)?{name}`", text)
        or re.search(rf"^[\s│├└─|]*(?:src/nightlab/|nightlab/)?{name}(?:\s|$)", text, re.M)
    )


def test_the_code_map_names_every_room():
    line, text = code_map()
    missing = [room for room in ROOMS if not names_room(text, room)]
    assert not missing, f"README.md's code map (line {line}) does not name the room(s) {missing}"


def test_every_tests_path_the_readme_names_exists():
    named = sorted(set(re.findall(r"`(tests/[\w./-]+)`", README)))
    assert named, "the README names no tests"
    missing = [path for path in named if not (REPO / path).exists()]
    assert not missing, f"README.md names tests that do not exist: {missing}"
