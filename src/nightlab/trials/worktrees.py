"""Clean trees for trials, prepared ahead of time.

A tree is a plain copy of a commit's files (no .git), recreated from nothing before every
trial: what one trial left there never reaches the next. A tree freed by a finished trial
has its outputs moved out and is recreated in a background thread at the commit the next
trial will most likely use, so starting a trial usually costs no git call.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from nightlab.trials.workspace import Workspace


class WorktreePool:
    def __init__(self, ws: Workspace, share: list[str], busy: set[str] | None = None) -> None:
        self.ws = ws
        self.share = share
        self.busy: set[str] = set(busy or ())
        self.free: dict[str, tuple[str, Future[Path]]] = {}  # name → (target sha, prep)
        self.commits: dict[str, str] = {}  # name → the commit a busy tree holds
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nightlab-worktree")

    def _prepare(
        self, name: str, sha: str, outputs: Path | None = None, ran: str | None = None
    ) -> Future[Path]:
        def prepare() -> Path:
            if outputs is not None and ran is not None:
                tracked = {*self.ws.files(ran), *self.share}
                self.ws.keep_outputs(name, outputs, tracked)
            return self.ws.checkout(name, sha, self.share)

        return self._pool.submit(prepare)

    def acquire(self, sha: str) -> tuple[str, Path]:
        """A clean tree at `sha` for a trial to run in: (its name, the lab folder in it)."""
        # a tree already reset (its background prep done) at `sha` first, then any ready
        # one, then one still being reset: waiting for a reset is what delays a trial
        ranked = sorted(self.free.items(), key=lambda kv: (not kv[1][1].done(), kv[1][0] != sha))
        name = ranked[0][0] if ranked else None
        if name is None:
            name = self._new_name()
            workdir = self.ws.checkout(name, sha, self.share)
        else:
            target, prep = self.free.pop(name)
            try:
                workdir = prep.result()
            except Exception:
                target = None  # the background reset failed: do it here, errors and all
            if target != sha:
                workdir = self.ws.checkout(name, sha, self.share)
        self.busy.add(name)
        self.commits[name] = sha
        if not self.free:  # keep one spare ready for the next trial
            spare = self._new_name()
            self.free[spare] = (sha, self._prepare(spare, sha))
        return name, workdir

    def release(self, name: str, next_sha: str, outputs: Path, ran: str = "") -> None:
        """The trial in `name` ended: move what it wrote to `outputs` (files that are not
        those of `ran`, the commit it held), then recreate the tree at `next_sha`, in the
        background."""
        self.busy.discard(name)
        ran = self.commits.pop(name, None) or ran or None
        self.free[name] = (next_sha, self._prepare(name, next_sha, outputs, ran))

    def _new_name(self) -> str:
        taken = self.busy | set(self.free)
        return next(f"t{i}" for i in range(len(taken) + 1) if f"t{i}" not in taken)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
