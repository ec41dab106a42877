"""`nightlab adopt`: carry a trial's parameters to where the project's defaults live, when
that can be done safely: one scalar in a Hydra YAML config, one literal keyword of a
hydra-zen `builds(...)` / `make_config(...)` call or of `nightlab.params(...)`.

Safe means: exactly one place holds the knob with the value the night started from, that
place is a plain literal, and the file, rewritten, reads back the new value there. Only
that span changes (comments, layout and line endings stay). The new value is written as a
Python literal (`repr`) or a YAML flow scalar, never pasted as text; everything else is
reported, with where to set it by hand.
"""

from __future__ import annotations

import ast
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

MAX_FILE = 1 << 20  # a config or module bigger than this is not scanned
ZEN_CALLS = {"builds", "make_config"}
PARAMS = "params"  # nightlab.params(...) / params(...) imported from nightlab


@dataclass
class Site:
    """One place a knob's default is written: its span (bytes) in a file."""

    path: str
    line: int
    start: int
    end: int
    value: Any  # what is there now (None with `why`: not a literal)
    why: str | None = None


@dataclass
class Carried:
    edits: dict[str, bytes] = field(default_factory=dict)  # file → its new bytes
    carried: dict[str, str] = field(default_factory=dict)  # knob → "file:line"
    not_carried: dict[str, str] = field(default_factory=dict)  # knob → why, where to set it


def carry(
    params: dict[str, Any],
    before: dict[str, Any],
    files: dict[str, Callable[[], bytes]],
    hydra: bool,
) -> Carried:
    """Rewrite, in `files` (lab-relative path → its bytes as adopt would commit them), the
    default of each knob in `params` (knob → the trial's value) that is now `before`."""
    out = Carried()
    sites: dict[str, list[Site]] = {name: [] for name in params}
    loaded: dict[str, bytes] = {}
    for path, read in sorted(files.items()):
        suffix = PurePosixPath(path).suffix
        if suffix not in (".py", ".yaml", ".yml"):
            continue
        data = loaded[path] = read()
        if len(data) > MAX_FILE or not (suffix == ".py" or hydra):
            continue
        for name, found in _sites(path, data, list(params), hydra).items():
            sites[name] += found
    same_of = {
        name: [s for s in found if s.why is None and _same(s.value, before.get(name))]
        for name, found in sites.items()
    }
    # the last span of a file first: an earlier one rewritten (another length) would move it
    later_first = sorted(params, key=lambda n: -same_of[n][0].start if same_of[n] else 0)
    for name in later_first:
        value, found, same = params[name], sites[name], same_of[name]
        if len(same) == 1:
            site = same[0]
            data = out.edits.get(site.path, loaded[site.path])
            new = _rewrite(site, data, name, value, hydra)
            if new is not None:
                out.edits[site.path] = new
                out.carried[name] = f"{site.path}:{site.line}"
                continue
            out.not_carried[name] = f"{site.path}:{site.line} could not be rewritten safely"
        elif same:
            where = ", ".join(f"{s.path}:{s.line}" for s in same)
            out.not_carried[name] = f"{len(same)} places hold {before.get(name)!r}: {where}"
        elif found:
            where = ", ".join(f"{s.path}:{s.line} ({s.why or f'holds {s.value!r}'})" for s in found)
            out.not_carried[name] = f"no literal {before.get(name)!r} to replace: {where}"
        elif hydra:
            out.not_carried[name] = "not found in the project's YAML or hydra-zen configs"
        if name in out.not_carried:
            out.not_carried[name] += f"; set {name} = {value!r} there by hand"
    out.carried = {n: out.carried[n] for n in params if n in out.carried}
    out.not_carried = {n: out.not_carried[n] for n in params if n in out.not_carried}
    return out


def _same(a: Any, b: Any) -> bool:
    """The same setting: 0.01 is 0.01, 16 is 16.0, but True is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _number(a) and _number(b):
        return a == b
    return type(a) is type(b) and a == b


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _rewrite(site: Site, data: bytes, name: str, value: Any, hydra: bool) -> bytes | None:
    """`data` with the site's span holding `value`, or None when it would not read back."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = repr(value) if site.path.endswith(".py") else _yaml_scalar(value)
    if text is None:
        return None
    new = data[: site.start] + text.encode() + data[site.end :]
    again = _sites(site.path, new, [name], hydra)[name]
    back = [s for s in again if s.start == site.start]
    ok = len(again) == len(_sites(site.path, data, [name], hydra)[name]) and len(back) == 1
    return new if ok and back[0].why is None and _same(back[0].value, value) else None


def _sites(path: str, data: bytes, names: list[str], hydra: bool) -> dict[str, list[Site]]:
    """Per knob, where `data` (the file at `path`) sets it; the file parsed once, and not
    at all when no knob's key appears in it."""
    keys = {name: name.rsplit(".", 1)[-1] if hydra else name for name in names}
    if not any(key.encode() in data for key in keys.values()):
        return {name: [] for name in names}
    if path.endswith(".py"):
        return _python_sites(path, data, keys, hydra)
    return {name: _yaml_sites(path, data, name) for name in names}


def _yaml_scalar(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        import yaml

        return yaml.safe_dump(value).split("\n")[0]  # 1.0e-05: YAML 1.1 reads it back
    if isinstance(value, str):  # a double-quoted YAML scalar: escapes, never a new line
        return "".join(  # json's \ud83d\ude00 reads back in YAML as two lone surrogates
            c if c.isascii() or c.isprintable() else f"\\U{ord(c):08x}"
            for c in json.dumps(value, ensure_ascii=False)
        )
    return None


# ------------------------------------------------------------------------------- Python
def _python_sites(
    path: str, data: bytes, keys: dict[str, str], hydra: bool
) -> dict[str, list[Site]]:
    """Per knob, its keyword (`keys`: hydra, the path's last part) in builds / make_config
    calls (hydra) or in nightlab.params calls (otherwise)."""
    out: dict[str, list[Site]] = {name: [] for name in keys}
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # nesting too deep
        return out
    starts = _line_starts(data)
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # not in the first line's offsets
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _callee(node.func, hydra)):
            continue
        for kw in node.keywords:
            v = kw.value
            start = starts[v.lineno - 1] + v.col_offset + (bom if v.lineno == 1 else 0)
            end = starts[v.end_lineno - 1] + v.end_col_offset  # type: ignore[operator]
            end += bom if v.end_lineno == 1 else 0
            for name in (name for name, key in keys.items() if kw.arg == key):
                if _literal(v):
                    out[name].append(Site(path, v.lineno, start, end, ast.literal_eval(v)))
                else:
                    out[name].append(Site(path, v.lineno, start, end, None, "not a literal"))
    return out


def _callee(func: ast.expr, hydra: bool) -> bool:
    if hydra:
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return called in ZEN_CALLS
    if isinstance(func, ast.Name):
        return func.id == PARAMS
    return (
        isinstance(func, ast.Attribute)
        and func.attr == PARAMS
        and isinstance(func.value, ast.Name)
        and func.value.id == "nightlab"
    )


def _literal(v: ast.expr) -> bool:
    if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub | ast.UAdd):
        return isinstance(v.operand, ast.Constant) and _number(v.operand.value)
    return isinstance(v, ast.Constant) and isinstance(v.value, int | float | str | bool)


def _line_starts(data: bytes) -> list[int]:
    starts, at = [0], 0
    for line in data.splitlines(keepends=True):
        at += len(line)
        starts.append(at)
    return starts


# --------------------------------------------------------------------------------- YAML
def _yaml_sites(path: str, data: bytes, name: str) -> list[Site]:
    """The scalar at the knob's dotted path in a YAML file; in a Hydra config group's file
    (`optim/adam.yaml` for `optim.lr`) also at the rest of the path."""
    import yaml

    try:
        text = data.decode("utf-8")
        root = yaml.compose(text, Loader=_hydra_loader())
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return []
    parts = name.lstrip("+").split(".")
    folders = PurePosixPath(path).parent.parts
    tails = [parts] + [parts[i:] for i in range(1, len(parts)) if folders[-i:] == tuple(parts[:i])]
    out = []
    for tail in tails:
        node = _at(root, tail)
        if node is None:
            continue
        line = node.start_mark.line + 1
        start = len(text[: node.start_mark.index].encode())
        end = len(text[: node.end_mark.index].encode())
        if not isinstance(node, yaml.ScalarNode) or node.style not in (None, "'", '"'):
            out.append(Site(path, line, start, end, None, "not one plain value"))
            continue
        try:
            value = yaml.safe_load(yaml.serialize(node))
        except yaml.YAMLError:
            out.append(Site(path, line, start, end, None, "a tagged value"))
            continue
        out.append(Site(path, line, start, end, value))
    return out


@functools.cache
def _hydra_loader() -> Any:
    """A safe loader that reads plain scalars as Hydra (OmegaConf) does: `1e-3` is a float
    (YAML 1.1: a string), `2024-01-01` a string (YAML 1.1: a date)."""
    import re

    import yaml

    class HydraLoader(yaml.SafeLoader):
        pass

    HydraLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(  # omegaconf._utils.get_yaml_loader's
            r"""^(?:
         [-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
        |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    HydraLoader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in HydraLoader.yaml_implicit_resolvers.items()
    }
    return HydraLoader


def _at(node: Any, parts: list[str]) -> Any:
    import yaml

    for part in parts:
        if not isinstance(node, yaml.MappingNode):
            return None
        found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
        if len(found) != 1:
            return None
        node = found[0]
    return node
