"""The README documents every config key and every command that exists."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from nightlab.config import Config, Knob
from nightlab.lab.cli import app

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_config_key_is_in_the_reference():
    missing = []
    for section, field in Config.model_fields.items():
        model = field.annotation
        if section in ("search", "spec"):
            keys = [f"[{section}.NAME] {k}" for k in Knob.model_fields]
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
