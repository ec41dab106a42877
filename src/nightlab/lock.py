"""One loop per lab: an exclusive lock on `.nightlab/loop.lock` holding the owner's PID."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LabBusy(Exception):
    pass


class LabLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "loop.lock"
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


def held_by(state_dir: Path) -> int | None:
    """PID of the loop holding the lab's lock (0 if unreadable), None when no loop holds it.

    The lock is the authority on this machine: the kernel drops it when its process dies,
    however it dies, while a heartbeat can lag behind a living loop."""
    try:
        fd = os.open(state_dir / "loop.lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)
    return None
