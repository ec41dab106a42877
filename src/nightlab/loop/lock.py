"""One loop per lab: an exclusive lock on `.nightlab/loop.lock` holding the owner's PID."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from nightlab import UserError
from nightlab.store.paths import LOCK_NAME


class LabBusy(UserError):
    pass


class LabLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LabBusy(
                f"another nightlab loop (PID {owner}) is running on {self.path.parent.parent}; "
                "watch it with `nightlab status`, or end it with `nightlab stop`"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
