"""Files beside the store: the loop lock's owner, what a failed write means, the one atomic
write and the one log tail."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from pathlib import Path
from typing import Any

from nightlab.store.paths import LOCK_NAME, LOGS, LabPaths

__all__ = [
    "LOCK_NAME",
    "held_by",
    "storage_problem",
    "write_atomic",
    "write_json",
    "tail",
    "trial_logs_tail",
]

TAIL_BYTES = 16384  # how much of the end of a log a tail reads
TAIL_LINES = 40  # the lines of each log a trial's tail keeps


def held_by(state_dir: Path) -> int | None:
    """PID of the loop holding the lab's lock (0 if unreadable), None when no loop holds it.

    The lock is the authority on this machine: the kernel drops it when its process dies,
    however it dies, while a heartbeat can lag behind a living loop."""
    try:
        fd = os.open(LabPaths.of_state(state_dir).lock, os.O_RDONLY)
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


def _token() -> str:
    return os.urandom(6).hex()  # (the secrets module would cost the fast views an import)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` at once: a reader (or a crash) sees the old file or the new
    one, never half of one. The data goes to a temporary file created afresh in the same
    folder (O_EXCL|O_NOFOLLOW: a link planted at any name is never written through), which is
    then renamed over `path` (a link planted at `path` is replaced, not followed)."""
    path = Path(path)
    data = text.encode() if isinstance(text, str) else text
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = path.with_name(f".{path.name}.{_token()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any file written
        except FileExistsError:  # a name taken (or planted): draw another
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, *, indent: int | None = 2, newline: bool = False) -> None:
    """`data` as JSON (anything else as its string), written with `write_atomic`."""
    text = json.dumps(data, indent=indent, default=str, allow_nan=True)
    write_atomic(path, text + "\n" if newline else text)


def _open_regular(path: Path) -> int | None:
    """A descriptor of `path` when it is a regular file reached without a link at its name
    (a link, a pipe a trial planted is never read, nor blocks); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None


def read_regular(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of a regular file (see _open_regular); None when it is not one, or holds
    more than `limit` bytes."""
    fd = _open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    return None if limit is not None and len(data) > limit else data


def tail(path: Path, lines: int | None = None, *, max_bytes: int = TAIL_BYTES) -> str:
    """The end of a text file: its last `max_bytes` bytes decoded (undecodable bytes
    replaced, newlines as "\\n"), then only its last `lines` lines when given; "" when it is
    missing, unreadable or not a plain file (a link, a pipe a trial planted is not read)."""
    fd = _open_regular(path)
    if fd is None:
        return ""
    try:
        raw = os.pread(fd, max_bytes, max(0, os.fstat(fd).st_size - max_bytes))
    except OSError:
        return ""
    finally:
        os.close(fd)
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


def trial_logs_tail(trial_dir: Path, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a trial's stderr.log and stdout.log, each under a heading,
    with secrets redacted (what the store keeps of a failed trial)."""
    from nightlab.store.redact import redact  # (`status --json` reads the lock, not logs)

    parts = []
    for name in LOGS:
        text = tail(Path(trial_dir) / name, lines).splitlines()
        if text:
            parts.append(f"--- {name} (last {len(text)} lines) ---\n" + "\n".join(text))
    return redact("\n".join(parts))
