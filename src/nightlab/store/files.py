"""Files beside the store: the loop lock's owner, and what a failed write means."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "loop.lock"


def held_by(state_dir: Path) -> int | None:
    """PID of the loop holding the lab's lock (0 if unreadable), None when no loop holds it.

    The lock is the authority on this machine: the kernel drops it when its process dies,
    however it dies, while a heartbeat can lag behind a living loop."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY)
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


def storage_problem(exc: BaseException) -> str | None:
    """One line for a full disk or a read-only / unwritable state folder (the store is left
    as it was: every write is one transaction), or None for any other error."""
    seen: BaseException | None = exc
    while seen is not None:  # look through the chain (SQLAlchemy wraps sqlite's errors)
        text = str(seen).lower()
        if "disk is full" in text or getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            where = getattr(seen, "filename", None)
            return (f"the disk is full{f' ({where})' if where else ''}: free some space, then "
                    "run again — the night resumes where it stopped")  # fmt: skip
        if "readonly database" in text or getattr(seen, "errno", None) in (
            errno.EROFS, errno.EACCES, errno.EPERM
        ):  # fmt: skip
            where = getattr(seen, "filename", None) or "the lab's .nightlab/ folder"
            return f"cannot write {where} ({seen}): make it writable, then run again"
        seen = seen.__cause__ or seen.__context__
    return None
