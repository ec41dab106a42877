"""`nightlab init`: the lab's name from its folder, the initial commit, and `init --here`
(a nightlab.toml for an existing project, written next to its code without touching it).

The user's code is only read as text: an entry point is found by scanning the top-level
Python files for `@hydra.main(` or hydra-zen, never by importing or running them."""

from __future__ import annotations

import json
import math
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import CONFIG_NAME
from nightlab.lab.errors import LabError

IDENTITY = ["-c", "user.name=nightlab", "-c", "user.email=nightlab@localhost"]
MAX_SOURCE = 1 << 20  # a top-level .py file larger than this is not scanned
MAX_YAML = 256 * 1024  # a hydra config larger than this is not read
MAX_NODES = 2000  # values visited in the config (an alias bomb stops here)
MAX_DEPTH = 8
MAX_KNOBS = 40
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
FALLBACK_ENTRIES = ("train.py", "main.py")


def lab_name(folder: Path) -> str:
    """The folder's name as a lab name: accents dropped, every run of characters other than
    ASCII letters, digits, `-` and `_` becomes one `-` (valid in a git ref and an MLflow
    experiment name), at most 64 characters; "lab" when nothing is left."""
    raw = unicodedata.normalize("NFKD", Path(folder).resolve().name)
    ascii_only = raw.encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_only).strip("-_")[:64].strip("-_")
    return name or "lab"


def set_name(toml_text: str, name: str) -> str:
    """The template's nightlab.toml with its `[lab] name` (its first `name = ` line) set."""
    return re.sub(r'(?m)^name = "[^"\n]*"', f'name = "{name}"', toml_text, count=1)


def git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )


def commit(folder: Path, message: str, paths: list[str] | None = None) -> None:
    """Commit everything in `folder` (paths None) or only `paths`; nightlab's identity is
    used only when the user has no `user.email`."""
    identity = [] if git(folder, "config", "user.email").stdout.strip() else IDENTITY
    only = ["--", *paths] if paths is not None else []
    add = git(folder, "add", *(only or ["-A"]))
    done = add if add.returncode else git(folder, *identity, "commit", "-q", "-m", message, *only)
    if done.returncode:
        why = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise LabError(f"git refused the commit in {folder}: {why[-1] if why else 'no reason'}")


# ---------------------------------------------------------------- init --here


@dataclass
class Entry:
    file: str
    kind: str  # "hydra", "hydra-zen" or "plain"
    config: Path | None = None


def _read(path: Path, limit: int) -> str | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None


def _arg(args: str, name: str) -> str | None:
    found = re.search(rf"\b{name}\s*=\s*(['\"])([^'\"\n]*)\1", args)
    return found.group(2) if found else None


def find_entry(folder: Path) -> Entry | None:
    """The project's entry point: a top-level .py file with `@hydra.main(` (its config file
    from `config_path`/`config_name`, when inside the folder) or hydra-zen; else train.py
    or main.py; None when there is none."""
    files = sorted(folder.glob("*.py"), key=lambda p: (p.name not in FALLBACK_ENTRIES, p.name))
    for path in files:
        text = _read(path, MAX_SOURCE)
        if text is None:
            continue
        main = re.search(r"@hydra\.main\(([^)]*)\)", text)
        if main:
            return Entry(path.name, "hydra", _config_file(folder, main.group(1)))
        if re.search(r"^\s*(from hydra_zen import|import hydra_zen)", text, re.M) and (
            "store(" in text or "zen(" in text
        ):
            return Entry(path.name, "hydra-zen")
    for name in FALLBACK_ENTRIES:
        if (folder / name).is_file():
            return Entry(name, "plain")
    return None


def _config_file(folder: Path, args: str) -> Path | None:
    config_path, config_name = _arg(args, "config_path"), _arg(args, "config_name")
    if config_name is None:
        return None
    name = config_name if config_name.endswith((".yaml", ".yml")) else config_name + ".yaml"
    path = (folder / (config_path or ".") / name).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def load_yaml(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The config as a mapping, or None and why (too large, not YAML, no PyYAML)."""
    try:
        import yaml
    except ImportError:
        return None, "PyYAML is not installed, so no knobs are proposed from the config"
    text = _read(path, MAX_YAML)
    if text is None:
        return None, f"{path.name} is missing or larger than {MAX_YAML // 1024} KiB: not read"
    try:
        data = yaml.safe_load(text)
    except Exception as exc:  # any YAML error, or a recursion too deep  # noqa: BLE001
        return None, f"{path.name} is not YAML ({type(exc).__name__}): no knobs proposed"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a mapping: no knobs proposed"
    return data, ""


def leaves(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(dotted name, value) of the config's numbers, booleans and strings; `defaults`,
    `hydra`, `_private_` keys, interpolations and `???` are left out; the walk stops after
    MAX_NODES values, MAX_DEPTH levels or MAX_KNOBS leaves (an alias bomb ends quickly)."""
    out: list[tuple[str, Any]] = []
    seen = 0
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and seen < MAX_NODES and len(out) < MAX_KNOBS:
        prefix, value, depth = stack.pop()
        seen += 1
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                continue
            keys = [k for k in value if isinstance(k, str) and KEY.fullmatch(k)]
            for key in reversed(keys):
                if not prefix and key in ("defaults", "hydra") or key.startswith("_"):
                    continue
                stack.append((f"{prefix}.{key}" if prefix else key, value[key], depth + 1))
        elif prefix and _usable(value):
            out.append((prefix, value))
    return out


def _usable(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 < value <= 2**53 // 2
    if isinstance(value, float):
        return math.isfinite(value) and 0 <= value <= 1e300
    if isinstance(value, str):
        return 0 < len(value) <= 200 and "${" not in value and value != "???" and _utf8(value)
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def knob_toml(name: str, value: Any) -> str:
    """A `[search."name"]` table around the default: floats ÷10…×10 on a log scale (0.0:
    0…1), ints ÷2…×2, booleans both ways, strings a choice of the default alone."""
    head = f"[search.{json.dumps(name)}]\n"
    if isinstance(value, bool):
        body = f"choices = [true, false]\ndefault = {str(value).lower()}\n"
    elif isinstance(value, int):
        body = f'low = {max(1, value // 2)}\nhigh = {value * 2}\ntype = "int"\ndefault = {value}\n'
    elif isinstance(value, float):
        if value == 0:
            body = f"low = 0.0\nhigh = 1.0\ndefault = {value!r}\n"
        else:
            body = f"low = {value / 10!r}\nhigh = {value * 10!r}\nlog = true\ndefault = {value!r}\n"
    else:
        quoted = json.dumps(value, ensure_ascii=False)
        body = f"choices = [{quoted}]  # add the other values to try\ndefault = {quoted}\n"
    return head + body


EXAMPLE_KNOB = """# [search."optim.lr"]   # a knob: passed to the script as `optim.lr=VALUE`
# low = 1e-4
# high = 1e-1
# log = true
# default = 1e-3
"""


def render(folder: Path, entry: Entry, metric: str, direction: str) -> tuple[str, list[str]]:
    """The nightlab.toml text for the project, and notes for the user."""
    notes: list[str] = []
    knobs: list[tuple[str, Any]] = []
    if entry.kind == "hydra" and entry.config is not None:
        data, why = load_yaml(entry.config)
        if data is None:
            notes.append(why)
        else:
            knobs = leaves(data)
    elif entry.kind == "hydra-zen":
        notes.append(
            "hydra-zen config is Python: add the knobs to [search] by hand (a knob's `default` "
            "may be left out: each night reads it from the composed config)"
        )
    hydra = entry.kind != "plain"
    lines = [
        f"# nightlab configuration written by `nightlab init --here` for {entry.file}.",
        "",
        "[lab]",
        f'name = "{lab_name(folder)}"',
        'brief = "IDEA.md"  # the research brief the agents read',
        "",
        "[objective]",
        f"metric = {json.dumps(metric)}  # {entry.file} prints `{metric}=VALUE` lines",
        f'direction = "{direction}"',
        "",
        "[trial]",
        f'command = "python {entry.file}"',
        *(['params = "hydra"  # knobs reach the script as hydra overrides: `a.b=VALUE`']
          if hydra else []),
        "budget_seconds = 3600  # wall-clock limit per trial",
        f"editable = [{json.dumps(entry.file)}]  # what agents may change",
        "",
    ]  # fmt: skip
    if knobs:
        name = entry.config.name if entry.config else "the config"
        lines.append(f"# Knobs proposed from {name} (defaults are its values); check the ranges.")
        lines.extend(knob_toml(key, value) for key, value in knobs)
    elif hydra:  # the default may be left out: the night reads the composed config
        lines.append(EXAMPLE_KNOB.replace("# default = 1e-3", "# default = 1e-3   # optional"))
    else:
        lines.append(EXAMPLE_KNOB)
    lines += ["[agents]", 'worker = "search"', ""]
    return "\n".join(lines), notes


IDEA = """# {name}

What this project trains, what the metric ({metric}) means, and what is worth trying.
The agents read this brief before they propose a trial.
"""


def init_here(
    folder: Path, metric: str, direction: str, do_commit: bool = False
) -> tuple[list[str], list[str]]:
    """Write nightlab.toml (and IDEA.md if missing) into an existing project; commit those
    two files only with `do_commit`. Returns the files written and notes."""
    folder = Path(folder)
    if not metric or "\n" in metric:
        raise LabError("--metric needs a name, e.g. --metric val_loss")
    if not folder.is_dir():
        raise LabError(f"{folder} is not a folder; --here needs an existing project")
    if (folder / CONFIG_NAME).exists():
        raise LabError(f"{folder / CONFIG_NAME} exists already; edit it instead")
    entry = find_entry(folder)
    if entry is None:
        raise LabError(
            f"no entry point in {folder}: no top-level .py file with @hydra.main or "
            "hydra-zen, and no train.py or main.py"
        )
    text, notes = render(folder, entry, metric, direction)
    written = [CONFIG_NAME]
    (folder / CONFIG_NAME).write_text(text)
    if not (folder / "IDEA.md").exists():
        (folder / "IDEA.md").write_text(IDEA.format(name=lab_name(folder), metric=metric))
        written.append("IDEA.md")
    if do_commit:
        if git(folder, "rev-parse", "--is-inside-work-tree").returncode:
            init = git(folder, "init", "-q")
            if init.returncode:
                raise LabError(f"git init failed in {folder}: {init.stderr.strip()}")
        commit(folder, f"nightlab init --here ({entry.file})", written)
    return written, notes
