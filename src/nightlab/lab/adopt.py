"""`nightlab adopt TRIAL`: a trial's code and parameters become one commit on the user's
branch. The only command that writes to the user's working tree, and only when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nightlab.config import CONFIG_NAME
from nightlab.lab.errors import LabError
from nightlab.store.db import Store, Trial
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
        touched = changed + ([CONFIG_NAME] if params_changed else [])
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
            if params_changed:
                _set_defaults(lab, params_changed)
            objective = f"{cfg.objective.metric}={row.objective:.6g}"
            message = f"nightlab: adopt trial {trial_id} of {cfg.lab.name} ({objective})"
            sha = ws.commit_user(touched, message)
        except WorkspaceError as exc:  # a hook, no identity, signing...
            for rel, data in before.items():
                if data is None:
                    (lab.path / rel).unlink(missing_ok=True)
                else:
                    (lab.path / rel).write_bytes(data)
            err = str(exc).split(": ", 1)[-1]
            raise LabError(f"git refused the commit, so nothing was changed: {err}") from None
        with store.tx() as s:
            Store.event(
                s,
                "adopted",
                trial_id=trial_id,
                branch=branch,
                commit=sha,
                files=changed,
                params=params_changed,
            )
        return {
            "trial": trial_id,
            "branch": branch,
            "commit": sha,
            "files": changed,
            "params": params_changed,
        }
    finally:
        store.close()


def _set_defaults(lab: Lab, params: dict[str, Any]) -> None:
    """Rewrite `[search.X] default` in nightlab.toml, keeping the user's comments."""
    import tomlkit

    path = lab.path / CONFIG_NAME
    doc = tomlkit.parse(path.read_text())
    for name, value in params.items():
        doc["search"][name]["default"] = value
    path.write_text(tomlkit.dumps(doc))
