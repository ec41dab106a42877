"""Generated modules (`[trial] generated`): a module an agent writes is smoke-checked in a
subprocess before any trial uses it (see smoke_script.py for what each kind must do).

The check runs the code to be run, exported from its commit into a scratch folder, with
the training Python (`[repair] python`, default nightlab's), in the trial sandbox, under
`[smoke] timeout_seconds`; a module that fails is rejected with its error, and so is every
module of a commit whose code cannot be exported.

A symlink the lab committed to an absolute path (`datasets -> /data`) is the user's and
legitimate: `export` writes it last, after every file, so nothing is ever written through
it; a link that leaves the folder any other way is left out.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from nightlab.config import Config, matches
from nightlab.store.redact import trial_env
from nightlab.trials import process, sandbox, smoke_script
from nightlab.trials.workspace import Workspace, WorkspaceError


def written(cfg: Config, files: list[str]) -> list[str]:
    """The files among `files` that are generated modules."""
    return [f for f in files if matches(f, cfg.trial.generated)]


SCRIPT = "_nightlab_smoke.py"  # smoke_script.py's copy at the root of the exported code


def vet(
    cfg: Config,
    lab: Path,
    ws: Workspace,
    commit: str,
    files: list[str],
    tick: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Smoke-check each generated module in `files` at `commit`; the reasons to reject
    (empty when all pass). `tick` is called while a check runs (the loop watches its
    trials there); when it returns False the check is abandoned and the module rejected."""
    modules = written(cfg, files)
    if not modules:
        return []
    state = lab / ".nightlab"
    # TemporaryDirectory's cleanup also removes folders the checked code made read-only
    with tempfile.TemporaryDirectory(prefix="smoke-", dir=state if state.is_dir() else None,
                                     ignore_cleanup_errors=True) as tmp:  # fmt: skip
        scratch = Path(tmp)
        try:
            export(ws, commit, scratch)
            (scratch / SCRIPT).unlink(missing_ok=True)  # never copied through a committed link
            shutil.copyfile(smoke_script.__file__, scratch / SCRIPT)
        except (WorkspaceError, tarfile.TarError, OSError, ValueError) as exc:
            why = f"the code of {commit[:12]} cannot be exported for the check: {exc}"
            return [f"generated module {m} failed its smoke check: {why}" for m in modules]
        return [r for m in modules if (r := _check(cfg, lab, scratch, m, tick))]


def export(ws: Workspace, commit: str, dest: Path, links: bool = True) -> list[str]:
    """The lab's files at `commit` written into the folder `dest` (like `Workspace.export`,
    which refuses a commit holding a link to an absolute path); returns the links that were
    left out. With `links`, absolute links are written, last; without, left out too."""
    tree = f"{commit}:{ws.prefix.rstrip('/')}" if ws.prefix else commit
    proc = subprocess.run(["git", "archive", "--format=tar", tree], cwd=ws.lab,
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        raise WorkspaceError(f"git archive {tree}: {proc.stderr.decode(errors='replace')}")
    dest.mkdir(parents=True, exist_ok=True)
    later: list[tarfile.TarInfo] = []

    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
            later.append(member)
            return None

    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter=keep)
    skipped = []
    for member in later:
        link = dest / member.name
        inside = link.parent.resolve().is_relative_to(dest.resolve())
        if links and member.issym() and os.path.isabs(member.linkname) and inside:
            if not link.is_symlink() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(member.linkname)  # nothing is written after it
                continue
        skipped.append(member.name)
    return skipped


def _check(
    cfg: Config, lab: Path, workdir: Path, module: str, tick: Callable[[], bool]
) -> str | None:
    kind = smoke_script.kind_of(module)
    fail = f"generated module {module} failed its smoke check ({kind})"
    opts = {
        "batch": cfg.smoke.batch,
        "input_shape": cfg.smoke.input_shape,
        "num_classes": cfg.smoke.num_classes,
    }
    python = cfg.repair.interpreter(lab)
    if python is None:
        return f"{fail}: [repair] python = {cfg.repair.python!r} is not an executable"
    argv = [python, SCRIPT, kind, module, json.dumps(opts)]
    env = {**trial_env(cfg), "PYTHONDONTWRITEBYTECODE": "1"}
    done = process.run(
        [*sandbox.prefix(cfg, lab, sandbox.smoke_box(cfg, lab, workdir)), *argv], cwd=workdir,
        env=env,
        timeout=cfg.smoke.timeout_seconds, apart=True, tick=tick,
    )  # fmt: skip
    if done.killed == "deadline":
        return f"{fail}: it ran past {cfg.smoke.timeout_seconds:g} s ([smoke] timeout_seconds)"
    if done.killed is not None:  # not a verdict on the module: a resumed night may retry it
        return (f"generated module {module}: its smoke check ({kind}) was cut short, the "
                "night is stopping; not judged")  # fmt: skip
    if done.ok:
        return None
    lines = [line for line in done.errors.strip().splitlines() if line.strip()]
    why = lines[-1] if lines else f"the check exited with {done.exit_code} and said nothing"
    return f"{fail}: {why}"
