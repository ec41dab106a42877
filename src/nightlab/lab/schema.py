"""The JSON Schema of nightlab.toml, for editors (taplo, Even Better TOML): `nightlab schema`.

`Config.model_json_schema()` describes the model, not the file: `[search]` holds both the
knobs (tables) and the sampler's plain keys, which a before-validator moves into the
internal `search_settings`. Here `search` becomes one object whose plain keys are those
settings and whose other keys are knob tables, and `search_settings` is not offered."""

from __future__ import annotations

from typing import Any

from nightlab.config import SEARCH_SETTINGS, Config

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    defs = schema.get("$defs", {})
    props = schema["properties"]
    settings = _resolve(props.pop(SEARCH_SETTINGS), defs)
    knob = props["search"].get("additionalProperties", {})
    props["search"] = {
        "type": "object",
        "title": "Search",
        "description": "The knobs ([search.NAME] tables) and how the search worker samples "
        "them (the plain keys).",
        "properties": settings.get("properties", {}),
        "additionalProperties": knob,
    }
    schema["required"] = [r for r in schema.get("required", []) if r != SEARCH_SETTINGS]
    name = settings.get("title")
    if name and name in defs and not _used(schema, f"#/$defs/{name}"):
        del defs[name]
    return {
        "$schema": SCHEMA_URL,
        "title": "nightlab.toml",
        "description": "A nightlab lab's configuration (see the README's Configuration).",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The definition a `$ref` (alone or in an allOf, as pydantic writes defaults) names."""
    if "$ref" in node:
        return defs[node["$ref"].rsplit("/", 1)[-1]]
    for option in node.get("allOf", []):
        if "$ref" in option:
            return defs[option["$ref"].rsplit("/", 1)[-1]]
    return node


def _used(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_used(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_used(v, ref) for v in node)
    return False
