"""nightlab's own git history inside the lab's repository.

The user's working tree, index and branch are never touched: snapshots and trial commits
are built with a private index file (git plumbing), trials run in plain copies under
`.nightlab/worktrees/` (no .git: recreated before every trial), and results live on refs
that only nightlab writes:
`refs/nightlab/<lab>/base` (the snapshot a night started from), `.../trials/<id>` (every
trial's code) and the branch `nightlab/<lab>/best` (the best code so far).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nightlab import UserError

if TYPE_CHECKING:
    pass

MAX_UNTRACKED_MB = 50
# nightlab's own git calls run no hook and no fsmonitor of the repository's config
SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


class WorkspaceError(UserError):
    """Git refused or the lab's files are not in a state nightlab can snapshot."""


class Workspace:
    def __init__(self, lab: Path, state: Path, lab_name: str) -> None:
        self.lab = Path(lab).resolve()
        self.state = Path(state).resolve()
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", lab_name).strip("-.") or "lab"
        self.branch = f"nightlab/{safe}/best"
        self.refs = f"refs/nightlab/{safe}"  # base, trials/<id>: one namespace per lab
        self.git_env: dict[str, str] = {}
        top = self.git("rev-parse", "--show-toplevel", check=False)
        if top is not None and self.git("check-ignore", "-q", ".", check=False) is not None:
            top = None  # the lab sits in a folder its enclosing repo ignores: not its code
        if top is None:
            self.git("init", "-q")
            top = str(self.lab)
        self.top = Path(top)
        self.prefix = self.git("rev-parse", "--show-prefix") or ""
        # from here on every git call names its repository: none is discovered from a folder
        self.git_env = {"GIT_DIR": self.git("rev-parse", "--absolute-git-dir"),
                        "GIT_WORK_TREE": str(self.top)}  # fmt: skip
        self._exclude_state_dir()

    # git ------------------------------------------------------------------------------
    def git(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: bytes | None = None,
        check: bool = True,
        strip: bool = True,
        hooks: bool = False,
    ) -> str | None:
        proc = subprocess.run(
            ["git", *(() if hooks else SAFE), *args],
            cwd=cwd or self.lab,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **self.git_env, **(env or {})},
            input=input,
            capture_output=True,
        )
        if proc.returncode != 0:
            if not check:
                return None
            err = proc.stderr.decode(errors="replace").strip()
            raise WorkspaceError(f"git {' '.join(args[:3])} failed in {cwd or self.lab}: {err}")
        out = proc.stdout.decode(errors="replace")
        return out.strip() if strip else out

    def clear_stale_locks(self) -> list[str]:
        """Remove git lock files a killed loop's git children left in nightlab's own index
        files (only call this holding the lab lock: no git of ours runs)."""
        stale = list(self.state.glob("index.*.lock"))
        self.git("worktree", "prune")  # admin folders of git worktrees older versions made
        removed = []
        for lock in stale:
            if lock.is_file():
                lock.unlink()
                removed.append(str(lock))
        return removed

    def _exclude_state_dir(self) -> None:
        common = Path(self.git("rev-parse", "--git-common-dir"))
        common = common if common.is_absolute() else self.lab / common
        exclude = common / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text() if exclude.is_file() else ""
        if ".nightlab/" not in text.splitlines():
            exclude.write_text(
                text + ("" if text.endswith("\n") or not text else "\n") + ".nightlab/\n"
            )

    def _index_env(self, name: str) -> dict[str, str]:
        index = self.state / f"index.{name}"
        index.unlink(missing_ok=True)
        return {"GIT_INDEX_FILE": str(index)}

    def _commit(self, tree: str, parent: str | None, message: str) -> str:
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        ident = {
            "GIT_AUTHOR_NAME": "nightlab",
            "GIT_AUTHOR_EMAIL": "nightlab@localhost",
            "GIT_COMMITTER_NAME": "nightlab",
            "GIT_COMMITTER_EMAIL": "nightlab@localhost",
        }
        return self.git(*args, env=ident)

    # snapshots and commits ---------------------------------------------------------------
    def _working_tree(self) -> tuple[str, str | None]:
        """(tree, HEAD) of the lab's working tree as it is now, written to no branch."""
        self._refuse_big_untracked()
        env = self._index_env("snapshot")
        head = self.git("rev-parse", "--verify", "-q", "HEAD", check=False)
        if head:
            self.git("read-tree", head, env=env)
        self.git("add", "-A", "--", ".", env=env)
        return self.git("write-tree", env=env), head

    def changed_since(self, commit: str) -> bool:
        """Whether the lab's working tree differs from the snapshot `commit`."""
        return self._working_tree()[0] != self.git("rev-parse", f"{commit}^{{tree}}")

    def snapshot(self) -> str:
        """Commit the lab's working tree as it is now (tracked and untracked, not ignored)."""
        tree, head = self._working_tree()
        sha = self._commit(tree, head, "nightlab: snapshot of the lab's working tree")
        self.git("update-ref", f"{self.refs}/base", sha)
        return sha

    def _refuse_big_untracked(self) -> None:
        out = self.git("ls-files", "--others", "--exclude-standard", "-z", "--", ".")
        for rel in filter(None, (out or "").split("\0")):
            path = self.lab / rel
            size = path.stat().st_size / 1e6 if path.is_file() else 0
            if size > MAX_UNTRACKED_MB:
                raise WorkspaceError(
                    f"{path} ({size:.0f} MB) is untracked and not ignored, so every snapshot "
                    "would copy it into git: add it to .gitignore and, if trials need it, "
                    "list its folder under [trial] share in nightlab.toml"
                )

    def read(self, commit: str, path: str) -> str:
        """Content of lab-relative `path` at `commit` (WorkspaceError if absent)."""
        return self.git("show", f"{commit}:{self.prefix}{path}", strip=False)

    def blob(self, commit: str, path: str) -> bytes:
        """The exact bytes of lab-relative `path` at `commit`."""
        proc = subprocess.run(
            ["git", *SAFE, "show", f"{commit}:{self.prefix}{path}"], cwd=self.lab,
            env={**os.environ, **self.git_env}, capture_output=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise WorkspaceError(f"{path} is not in {commit[:12]}: {proc.stderr.decode().strip()}")
        return proc.stdout

    def files(self, commit: str) -> list[str]:
        """Every file of the lab at `commit`, lab-relative."""
        out = self.git("ls-tree", "-r", "-z", "--name-only", commit, strip=False) or ""
        return [f for f in out.split("\0") if f]

    def export(self, commit: str, dest: Path) -> None:
        """The lab's files at `commit`, written into the folder `dest` (no .git: a copy to
        work on, not a checkout)."""
        import tarfile

        tree = f"{commit}:{self.prefix.rstrip('/')}" if self.prefix else commit
        proc = subprocess.run(["git", *SAFE, "archive", "--format=tar", tree], cwd=self.lab,
                              env={**os.environ, **self.git_env}, capture_output=True)  # fmt: skip
        if proc.returncode != 0:
            raise WorkspaceError(f"git archive {tree}: {proc.stderr.decode().strip()}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(dest, filter="data")

    def mode(self, commit: str, path: str) -> str | None:
        """Git's mode of lab-relative `path` at `commit` (100644, 120000 for a symlink...),
        None when absent."""
        out = (
            self.git(
                "ls-tree", "--full-tree", "-z", commit, "--", f"{self.prefix}{path}", strip=False
            )
            or ""
        )
        return out.split(" ", 1)[0] if out else None

    def exists(self, commit: str, path: str) -> bool:
        return self.git("cat-file", "-e", f"{commit}:{self.prefix}{path}", check=False) is not None

    def commit_files(self, base: str, files: dict[str, str], message: str) -> str:
        """A new commit on top of `base` with lab-relative `files` replaced; nothing on disk."""
        env = self._index_env("trial")
        self.git("read-tree", base, env=env)
        for rel, text in files.items():
            listed = self.git("ls-tree", "--full-tree", base, "--", f"{self.prefix}{rel}")
            listed = listed or "100644"
            mode = listed.split()[0]  # keep an executable script executable
            blob = self.git("hash-object", "-w", "--stdin", input=text.encode())
            self.git(
                "update-index", "--add", "--cacheinfo", f"{mode},{blob},{self.prefix}{rel}", env=env
            )
        tree = self.git("write-tree", env=env)
        return self._commit(tree, base, message)

    def diff(self, a: str, b: str) -> str:
        if a == b:
            return ""
        spec = f":(top){self.prefix}" if self.prefix else "."
        return self.git("diff", a, b, "--", spec, strip=False)

    def set_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha)

    def keep_trial(self, trial_id: int, sha: str) -> None:
        self.set_ref(f"{self.refs}/trials/{trial_id}", sha)

    def set_best(self, sha: str) -> None:
        self.set_ref(f"refs/heads/{self.branch}", sha)

    # trial trees ----------------------------------------------------------------------------
    def checkout(self, name: str, sha: str, share: list[str]) -> Path:
        """The trial tree `name`, recreated from scratch as the repository's files at `sha`
        (a plain folder: no .git a trial could point elsewhere, nothing left by an earlier
        trial); returns the lab's folder in it. `share` entries are links to the lab's."""
        tree = self.tree_root(name)
        remove(tree)
        tree.mkdir(parents=True)
        env = self._index_env(f"tree-{name}")
        self.git("read-tree", sha, env=env)  # the whole repository: a lab may import beside it
        self.git("checkout-index", "-a", "-f", f"--prefix={tree}/", env=env)
        workdir = tree / self.prefix
        workdir.mkdir(parents=True, exist_ok=True)
        for entry in share:
            link = workdir / entry
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                link.symlink_to(self.lab / entry)
        return workdir

    def tree_root(self, name: str) -> Path:
        """The folder of trial tree `name` (the lab's files are at its `prefix`)."""
        return self.state / "worktrees" / name

    def keep_outputs(self, name: str, dest: Path, tracked: set[str]) -> list[str]:
        """Move what a trial wrote into the lab's folder of its tree (files not among
        `tracked`, the commit's lab-relative files) to `dest`; symlinks and anything but
        regular files stay behind (deleted with the tree: a trial's link must never lead
        the loop elsewhere). Returns what moved."""
        tree = self.tree_root(name) / self.prefix
        if tree.is_symlink() or not tree.is_dir():
            return []
        moved = []
        # by folder descriptor, never by path: a link swapped in for a folder is not followed
        for folder, _dirs, names, fd in os.fwalk(tree, follow_symlinks=False):
            for entry in names:
                rel = Path(folder, entry).relative_to(tree).as_posix()
                mode = os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode
                if rel in tracked or not stat.S_ISREG(mode):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(entry, target, src_dir_fd=fd)
                moved.append(rel)
        return moved

    def user_branch(self) -> str | None:
        return self.git("symbolic-ref", "--short", "-q", "HEAD", check=False)

    def user_dirty(self, paths: list[str]) -> list[str]:
        """Which of `paths` have uncommitted changes (as git names them, unquoted)."""
        out = self.git("status", "--porcelain", "-z", "--", *paths, strip=False) or ""
        entries = iter(out.split("\0"))
        dirty = []
        for entry in entries:
            if len(entry) > 3:
                dirty.append(entry[3:])
                if {"R", "C"} & set(entry[:2]):  # a rename or copy (index or working
                    # tree: an intent-to-add file): its source path comes next
                    next(entries, None)
        return dirty

    def commit_user(self, paths: list[str], message: str) -> str:
        """Commit `paths` of the user's working tree on their branch (`nightlab adopt`);
        when git refuses (a hook, no identity, signing…) the index is reset and
        WorkspaceError says why. Returns the new commit."""
        try:
            self.git("add", "--", *paths, hooks=True)  # the user's own commit: their hooks
            self.git("commit", "-q", "-m", message, "--", *paths, hooks=True)
        except WorkspaceError:
            self.git("reset", "-q", "--", *paths, check=False)
            raise
        return self.git("rev-parse", "HEAD")

    def drop_refs(self) -> list[str]:
        """Delete this lab's refs and best branch (`nightlab reset`); returns their names."""
        out = (
            self.git(
                "for-each-ref", "--format=%(refname)", f"{self.refs}/", f"refs/heads/{self.branch}"
            )
            or ""
        )
        for ref in out.split():
            self.git("update-ref", "-d", ref)
        self.git("worktree", "prune")
        return out.split()


def remove(path: Path) -> None:
    """Delete `path` (a folder or a link) without following any link in or at it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)  # unlinks links inside rather than following them


def init_repo(folder: Path) -> None:
    """Make `folder` a new git repository (`nightlab init`)."""
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)


def tree_ids(lab: Path, commits: list[str]) -> dict[str, str]:
    """Commit → its tree id, so that two commits of the same code group together; a commit
    git does not know (or no git at all) stands for itself. Read-only: no Workspace is
    set up (the report reads labs it must not change)."""
    unique = sorted(set(commits))
    if not unique:
        return {}
    try:
        proc = subprocess.run(
            ["git", *SAFE, "cat-file", "--batch-check=%(objectname) %(objecttype)"],
            cwd=lab,
            input="".join(f"{c}^{{tree}}\n" for c in unique),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return {c: c for c in unique}
    lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    out = {}
    for i, commit in enumerate(unique):
        parts = lines[i].split() if i < len(lines) else []
        out[commit] = parts[0] if len(parts) == 2 and parts[1] == "tree" else commit
    return out


def diff_numstat(lab: Path, base: str, commit: str) -> str | None:
    """`git diff --numstat base commit` in `lab`, or None when git cannot tell. Read-only."""
    try:
        proc = subprocess.run(
            ["git", *SAFE, "diff", "--numstat", base, commit],
            cwd=lab, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def diff_text(lab: Path, base: str, commit: str, max_bytes: int) -> str | None:
    """`git diff base commit` in `lab`, cut at `max_bytes` (a last line says so), or None when
    git cannot tell. Read-only. git writes to a temporary file, so a huge diff (a trial that
    commits a big file) costs disk for a moment, never memory."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(
                ["git", *SAFE, "diff", base, commit],
                cwd=lab, stdout=out, stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            return None
        size = os.fstat(out.fileno()).st_size
        out.seek(0)
        text = out.read(max_bytes).decode(errors="replace")
    if size > max_bytes:
        text += f"\n… cut at {max_bytes} bytes of {size}\n"
    return text
