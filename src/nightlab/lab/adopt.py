"""`nightlab adopt TRIAL`: a trial's code and parameters become one commit on the user's
branch. The only command that writes to the user's working tree, and only when asked."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nightlab.config import CONFIG_NAME
from nightlab.lab import adopt_code
from nightlab.lab.errors import LabError
from nightlab.store.db import Store, Trial
from nightlab.trials.composed import META_KEY
from nightlab.trials.workspace import Workspace, WorkspaceError

if TYPE_CHECKING:
    from nightlab.lab.api import Lab


def adopt(lab: Lab, trial_id: int) -> dict[str, Any]:
    if not lab.db.is_file():
        raise LabError(f"{lab.path} has no trials yet; run the lab first")
    cfg = lab.config
    store = Store(lab.db)
    try:
        with store.tx() as s:
            row = s.get(Trial, trial_id)
            base = Store.get_meta(s, "base_commit")
            composed_values = (Store.get_meta(s, META_KEY) or {}).get("values", {})
        if row is None:
            raise LabError(f"no trial {trial_id} in {lab.path} (see `nightlab leaderboard`)")
        if row.status != "succeeded":
            raise LabError(f"trial {trial_id} {row.status} ({row.reason}); adopt a succeeded one")
        ws = Workspace(lab.path, lab.state, cfg.lab.name)
        branch = ws.user_branch()
        if branch is None:
            raise LabError("your checkout is on a detached HEAD; switch to a branch first")
        changed = [
            p
            for p in (
                ws.git("diff", "--name-only", "--relative", base, row.commit) or ""
            ).splitlines()
            if p
        ]
        params_changed = {
            k: v for k, v in row.params.items() if k in cfg.search and cfg.search[k].default != v
        }
        code = _carry(lab, cfg, ws, row.commit, changed, params_changed, composed_values)
        if missed := _not_taken(lab, cfg, ws, row.commit, code, params_changed):
            kept = {k: v for k, v in params_changed.items() if k not in missed}
            code = _carry(lab, cfg, ws, row.commit, changed, kept, composed_values)
            code.not_carried = {k: code.not_carried.get(k) or missed[k] for k in params_changed
                                if k in missed or k in code.not_carried}  # fmt: skip
        edited = [rel for rel in code.edits if rel not in changed]
        touched = changed + edited + ([CONFIG_NAME] if params_changed else [])
        if not touched:
            raise LabError(f"trial {trial_id} has the same code and parameters as your lab")
        dirty = ws.user_dirty(touched)
        if dirty:
            raise LabError(
                f"uncommitted changes in {', '.join(dirty)}: commit or stash them, then adopt again"
            )
        for rel in changed:  # bytes, not text: line endings and encodings stay as they are
            path = lab.path / rel
            if path.exists() and path.read_bytes() != ws.blob(base, rel):
                raise LabError(
                    f"{rel} changed on your branch since the night started; merge by hand: "
                    f"git diff {base[:12]} {ws.refs}/trials/{trial_id} -- {rel}"
                )
        before = {
            rel: (lab.path / rel).read_bytes() if (lab.path / rel).exists() else None
            for rel in touched
        }
        try:
            for rel in changed:
                (lab.path / rel).parent.mkdir(parents=True, exist_ok=True)
                (lab.path / rel).write_bytes(ws.blob(row.commit, rel))
            for rel, data in code.edits.items():
                (lab.path / rel).write_bytes(data)
            if params_changed:
                _set_defaults(lab, params_changed, set(code.carried))
            objective = f"{cfg.objective.metric}={row.objective:.6g}"
            message = f"nightlab: adopt trial {trial_id} of {cfg.lab.name} ({objective})"
            sha = ws.commit_user(touched, message)
        except WorkspaceError as exc:  # a hook, no identity, signing...
            _restore(lab, before)
            err = str(exc).split(": ", 1)[-1]
            raise LabError(f"git refused the commit, so nothing was changed: {err}") from None
        except OSError as exc:  # a full disk, a read-only file: the tree as it was, not half
            _restore(lab, before)
            raise LabError(
                f"adopt could not write your files ({exc}), so nothing was changed; fix that "
                "and adopt again"
            ) from None
        except BaseException:  # a bug, a Ctrl-C: still not half-written
            _restore(lab, before)
            raise
        with store.tx() as s:
            Store.event(
                s,
                "adopted",
                trial_id=trial_id,
                branch=branch,
                commit=sha,
                files=changed + edited,
                params=params_changed,
                not_carried=code.not_carried,
            )
        return {
            "trial": trial_id,
            "branch": branch,
            "commit": sha,
            "files": changed,
            "params": params_changed,
            "carried": code.carried,  # knob → the file:line now holding its new default
            "not_carried": code.not_carried,  # knob → why not, and where to set it
        }
    finally:
        store.close()


def _restore(lab: Lab, before: dict[str, bytes | None]) -> None:
    """The user's files as they were before adopt wrote them."""
    for rel, data in before.items():
        if data is None:
            (lab.path / rel).unlink(missing_ok=True)
        else:
            (lab.path / rel).write_bytes(data)


def _carry(
    lab: Lab,
    cfg: Any,
    ws: Workspace,
    commit: str,
    changed: list[str],
    params: dict[str, Any],
    composed_values: dict[str, Any],
) -> adopt_code.Carried:
    """Where the project's own defaults of `params` can be rewritten (see adopt_code):
    the lab's tracked files as adopt commits them, links and files outside it left out."""
    if not params:
        return adopt_code.Carried()
    listing = ws.git("ls-tree", "-r", "-z", commit, "--", ".", strip=False) or ""
    root = lab.path.resolve()
    files: dict[str, Callable[[], bytes]] = {}
    for entry in listing.split("\0"):
        meta, _, rel = entry.partition("\t")
        path = lab.path / rel
        if not rel or not meta.startswith("100") or rel == CONFIG_NAME:  # 120000: a link
            continue
        if rel in changed:
            files[rel] = functools.partial(ws.blob, commit, rel)
        elif path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root):
            files[rel] = path.read_bytes
    before = {k: composed_values.get(k, cfg.search[k].default) for k in params}
    return adopt_code.carry(params, before, files, hydra=cfg.trial.params == "hydra")


def _not_taken(
    lab: Lab, cfg: Any, ws: Workspace, commit: str, code: adopt_code.Carried,
    params: dict[str, Any],
) -> dict[str, str]:
    """The carried knobs the project's composed config would not give after the rewrite
    (a literal of a config the app does not compose looks the same), each with why: the
    trial's code with the rewrites, in a sealed copy, read with Hydra's --cfg. Only for
    `params = "hydra"`: a `nightlab.params(...)` literal is the value itself."""
    import tempfile
    from pathlib import Path
    from tarfile import TarError

    from nightlab.trials import composed, smoke

    if not code.carried or cfg.trial.params != "hydra":
        return {}
    by_hand = {name: f"set {name} = {params[name]!r} there by hand" for name in code.carried}
    # TemporaryDirectory: its cleanup also empties a folder the code made read-only
    scratch = tempfile.TemporaryDirectory(
        prefix="adopt-", dir=lab.state if lab.state.is_dir() else None,
        ignore_cleanup_errors=True,
    )  # fmt: skip
    copy = Path(scratch.name)
    try:
        smoke.export(ws, commit, copy, links=False)
        for rel, data in code.edits.items():
            target = copy / rel
            if target.is_symlink() or not target.resolve().is_relative_to(copy.resolve()):
                raise OSError(f"{rel} is not a plain file of the trial's code")
            target.write_bytes(data)
        config = composed.read(cfg, lab.path, tree=copy)
    except (composed.ComposedConfigError, WorkspaceError, OSError, ValueError, TarError) as exc:
        why = f"the rewritten config could not be checked ({exc})"
        return {name: f"{why}; {by_hand[name]}" for name in code.carried}
    finally:
        scratch.cleanup()
    missed = {}
    for name, where in code.carried.items():
        try:
            got = repr(cfg.normalize({name: composed.lookup(config, name)})[name])
        except composed.ComposedConfigError:
            got = "nothing"
        if got != repr(cfg.normalize({name: params[name]})[name]):
            got = got if len(got) <= 200 else f"{got[:200]}…"  # the trial's code chose it
            missed[name] = (
                f"rewriting {where} would not change the project's composed config (it "
                f"would give {got}: the app composes another place), so it was left as it "
                f"was; {by_hand[name]}"
            )
    return missed


def _set_defaults(lab: Lab, params: dict[str, Any], in_code: set[str]) -> None:
    """Rewrite `[search.X] default` in nightlab.toml, keeping the user's comments; a default
    it leaves out (the project's config gives it) stays out when the config now holds it."""
    import tomlkit

    path = lab.path / CONFIG_NAME
    doc = tomlkit.parse(path.read_text())
    for name, value in params.items():
        knob = doc["search"][name]
        if "default" in knob or name not in in_code:
            knob["default"] = value
    path.write_text(tomlkit.dumps(doc))
