"""The project's composed config (`[trial] params = "hydra"`): what the baseline runs with
when nightlab.toml leaves a knob's `default` out, and what a declared one is checked against.

Hydra's standard `--cfg job --resolve` flags make an `@hydra.main` or hydra-zen
(`zen(f).hydra_main(...)`) app print its composed job config as YAML and exit without
running the job. The lab's own `[trial] command` runs that way in the lab folder, with the
trial's environment (secrets scrubbed, `python` = the training interpreter), a time limit
and a cap on what it prints; the YAML is read with a safe loader (no Python tags).
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from nightlab import UserError
from nightlab.config import Config
from nightlab.store.redact import trial_env
from nightlab.trials import process

FLAGS = "--cfg job --resolve"
META_KEY = "composed_config"  # the store's copy: {"knobs": names, "values": {knob: value}}
MAX_BYTES = 4 << 20  # a composed config is kilobytes; more is not one
MAX_SECONDS = 300.0  # at most; else the trial's budget_seconds when it is shorter
_TAIL = 1500


class ComposedConfigError(UserError):
    """The project's composed config could not be read, or does not fit a knob."""


def command_of(cfg: Config) -> str:
    """The shell command that prints the composed config (stderr goes elsewhere)."""
    return f"{cfg.trial.command} {FLAGS}"


def read(
    cfg: Config, lab: Path, timeout_s: float | None = None, *, tree: Path | None = None
) -> dict[str, Any]:
    """The composed config of the lab's training command, as a mapping: run in the lab
    folder (the user's own code), or in `tree` (a copy holding code an agent wrote), then
    sealed like a smoke check (sandbox.smoke_box: that copy and nothing else of the lab)."""
    from nightlab.trials import sandbox

    timeout = timeout_s or min(cfg.trial.budget_seconds, MAX_SECONDS)
    where = lab if tree is None else tree
    seal = [] if tree is None else sandbox.prefix(cfg, lab, sandbox.smoke_box(cfg, lab, tree))
    env = trial_env(cfg)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PYTHONUNBUFFERED="1", NIGHTLAB_LAB_DIR=str(where))
    for name in ("NIGHTLAB_PARAMS", "NIGHTLAB_METRICS", "NIGHTLAB_TEST", "MLFLOW_RUN_ID"):
        env.pop(name, None)
    shown = command_of(cfg)
    # in the copy when sealed: the box's own /tmp is not the host's
    with tempfile.TemporaryDirectory(prefix="nightlab-cfg-", dir=tree) as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        script = f"{{ {shown}\n}} 2>{shlex.quote(str(err))}"  # newline: a trailing # comment

        def small() -> bool:  # stop a flood at the cap, not when the disk is full
            return sum(p.stat().st_size for p in (out, err) if p.exists()) <= MAX_BYTES

        try:
            done = process.run([*seal, "/bin/sh", "-c", script], cwd=where, env=env,
                               timeout=timeout, log=out, tick=small)  # fmt: skip
        except OSError as exc:
            raise ComposedConfigError(f"`{shown}` could not start: {exc}") from None
        errors = _head(err, MAX_BYTES).decode("utf-8", "replace")[-_TAIL:].strip()
        text = _head(out, MAX_BYTES + 1)
    fix = (
        "run it by hand in the lab folder to see why; or give every knob a `default` in "
        "nightlab.toml"
    )
    if done.killed == "deadline":
        raise ComposedConfigError(
            f"`{shown}` (to read the project's composed config) was still running after "
            f"{timeout:g} s: an app that does not stop at Hydra's --cfg (not @hydra.main / "
            f"hydra-zen's zen(...).hydra_main?) or one stuck before it; {fix}"
        )
    if done.killed or len(text) > MAX_BYTES:
        raise ComposedConfigError(
            f"`{shown}` printed more than {MAX_BYTES >> 20} MiB, not a composed config; {fix}"
        )
    if done.exit_code != 0:
        raise ComposedConfigError(
            f"`{shown}` (to read the project's composed config) exited with "
            f"{done.exit_code}: {errors or '(nothing on stderr)'}; {fix}"
        )
    return parse(text.decode("utf-8", "replace"), shown)


def _head(path: Path, size: int) -> bytes:
    """Up to `size` bytes of the regular file `path`; nothing from what a sealed command may
    have swapped it for (a FIFO the read would wait on for ever, a link out of its copy)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as fh:
        return fh.read(size) if stat.S_ISREG(os.fstat(fd).st_mode) else b""


def parse(text: str, shown: str = "the command") -> dict[str, Any]:
    """The YAML mapping `text` (plain data only: a `!!python/...` tag is refused)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, RecursionError) as exc:
        why = (str(exc) or "nested too deep").splitlines()[0]
        raise ComposedConfigError(
            f"`{shown}` printed no YAML config ({why}); its output "
            f"begins {text[:200]!r}. Does the app print before Hydra starts? Give every "
            "knob a `default` in nightlab.toml, or keep stdout quiet at import"
        ) from None
    if not isinstance(data, dict):
        raise ComposedConfigError(
            f"`{shown}` printed no config mapping (its output begins {text[:200]!r}); is "
            "[trial] command a Hydra app? Give every knob a `default` in nightlab.toml"
        )
    return data


def lookup(config: dict[str, Any], name: str) -> Any:
    """The value at the knob's dotted `name` (a Hydra override path, `+` prefixes
    dropped); ComposedConfigError naming the nearby keys when it is not there."""
    node: Any = config
    path = name.lstrip("+").split(".")
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(path[:i]) or "the top level"
            keys = [str(k) for k in node] if isinstance(node, dict) else []
            near = difflib.get_close_matches(part, keys, n=1)
            hint = f"did you mean {'.'.join([*path[:i], near[0]])!r}? " if near else ""
            listed = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
            raise ComposedConfigError(
                f"knob {name!r} is not in the project's composed config: {hint}"
                f"keys at {where}: {listed or '(none: not a mapping)'}. Rename "
                f"[search.{name}] to the config's path, or give it a `default`"
            )
        node = node[part]
    if isinstance(node, dict | list):
        raise ComposedConfigError(
            f"knob {name!r} is a {type(node).__name__} in the project's composed config, "
            "not one value: point the knob at a single setting inside it"
        )
    return node


def checked(cfg: Config, values: dict[str, Any]) -> dict[str, Any]:
    """The knobs' config `values` normalised to their kind; one standing in for an omitted
    default that breaks its knob's clamp is an error (a declared default is never replaced)."""
    values = cfg.normalize(values)
    for name in cfg.unset_defaults():
        if why := cfg.search[name].violation(values[name]):
            raise ComposedConfigError(
                f"knob {name!r}: the project's config gives {values[name]!r}, which does not "
                f"fit [search.{name}] ({why}): widen the knob's range or give it a `default`"
            )
    return values


def with_kept_defaults(cfg: Config, db: Path) -> Config:
    """`cfg` with the defaults it leaves out filled from the values a night read and kept in
    the store `db` (unfilled when no night has read them yet, or the one that did failed
    before it began: the next reads them again)."""
    import contextlib

    from nightlab.store import queries, read

    with contextlib.closing(read.connect(db)) as conn:
        began = queries.meta_value(conn, "base_commit") is not None
        kept = (queries.meta_value(conn, META_KEY) if began else None) or {}
    return cfg.with_defaults(kept.get("values", {}))
