"""Metric history of a running trial: printed `name=value` / `name: value` lines and the
JSON lines that `nightlab.log()` appends to `NIGHTLAB_METRICS`, read incrementally.

The input is bounded (`[limits]`): the files are read in chunks, a line longer than
`max_line_bytes` is never held, and past any limit (line, name length, distinct names,
points, log size, or a followed file that is not a plain file) the reader stops reading and
says why in `flood` (`output_flood: ...`): the executor kills the trial for it."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nightlab.config import LimitsSection

_NUMBER = r"[-+]?(?:nan|inf(?:inity)?|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_PAIR = re.compile(rf"(?<![\w.\-/])([A-Za-z_][\w.\-/]*)\s*[=:]\s*({_NUMBER})(?![\w:]|\.\w)", re.I)
_NEWLINE = re.compile(rb"[\r\n]")

CHUNK = 1 << 16  # bytes read at a time
READ_BUDGET = 8 << 20  # bytes of one file a read takes in while the trial runs (the rest: later)
LOGS = ("stdout.log", "stderr.log")
METRICS = "metrics.jsonl"
# A followed path that is a link (ELOOP), names a folder through a file (ENOTDIR) or is a
# socket (ENXIO): the trial put something there that is not its output.
_FOREIGN = (errno.ELOOP, errno.ENOTDIR, errno.ENXIO)
PREFIX = "output_flood:"


def parse_line(line: str) -> dict[str, float]:
    """All `name=value` / `name: value` pairs of one printed line."""
    return {name: float(value) for name, value in _PAIR.findall(line)}


class _Flood(Exception):
    """A limit was passed; the message is the reason (`output_flood: ...`)."""


@dataclass
class _Tail:
    """New complete lines of a growing file `rel` (below the folder `root`) since the last
    read, in chunks: no line longer than `max_line` bytes is ever held."""

    root: Path
    rel: str
    offset: int = 0
    size: int = 0  # the file's size at the last look
    partial: bytes = b""

    @property
    def path(self) -> Path:
        return self.root / self.rel

    def open(self) -> int | None:
        """The file, opened without following a link at any level below `root` and without
        blocking (a FIFO); None while it does not exist. Anything but a plain file floods."""
        *folders, name = PurePosixPath(self.rel).parts
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = None
        try:
            at = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for part in folders:
                try:
                    inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=at)
                finally:
                    os.close(at)
                at = inner
            try:
                fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=at)
            finally:
                os.close(at)
            st = os.fstat(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            if exc.errno in _FOREIGN:
                raise _Flood(f"{PREFIX} {self.rel} is not a plain file ({exc.strerror})") from None
            return None  # unreadable for now (permissions, too many files): try again later
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _Flood(f"{PREFIX} {self.rel} is not a plain file (a pipe or a device)")
        self.size = st.st_size
        return fd

    def take(self, fd: int, emit: Callable[[bytes], None], max_line: int, final: bool) -> None:
        """Hand each new complete line to `emit` (with `final`, the unterminated last one
        too); a read while the trial runs takes at most READ_BUDGET bytes."""
        end = self.size if final else min(self.size, self.offset + READ_BUDGET)
        while self.offset < end:
            chunk = os.pread(fd, min(CHUNK, end - self.offset), self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            *done, rest = _NEWLINE.split(chunk)
            if done:
                done[0], self.partial = self.partial + done[0], b""
            for line in done:
                if len(line) > max_line:
                    raise self._too_long(max_line)
                if line.strip():
                    emit(line)
            if len(self.partial) + len(rest) > max_line:
                self.partial = b""  # never held: nothing of it is read any more
                raise self._too_long(max_line)
            self.partial += rest
        if final and self.partial.strip():
            line, self.partial = self.partial, b""
            emit(line)

    def _too_long(self, max_line: int) -> _Flood:
        return _Flood(f"{PREFIX} a line of {self.rel} is longer than max_line_bytes={max_line}")


@dataclass
class MetricReader:
    """Follows the printed logs (`logs`) and nightlab.log()'s JSON lines (`metrics`) of
    one trial folder, paths relative to `trial_dir`, within `limits` (default: [limits]'s
    defaults)."""

    trial_dir: Path
    objective: str
    _: KW_ONLY
    logs: tuple[str, ...] = LOGS
    metrics: str = METRICS
    limits: LimitsSection | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    grew: bool = False  # new bytes arrived during the last read (for hang detection)
    flood: str | None = field(default=None, init=False)  # why reading stopped (a limit)

    def __post_init__(self) -> None:
        self.trial_dir = Path(self.trial_dir)
        self._lim = self.limits or LimitsSection()
        for rel in (*self.logs, self.metrics):
            p = PurePosixPath(rel)
            if p.is_absolute() or ".." in p.parts or not p.parts or p.as_posix() != rel:
                raise ValueError(f"{rel!r}: a followed file is a plain path inside the trial")
        self._text = [_Tail(self.trial_dir, rel) for rel in self.logs]
        self._json = _Tail(self.trial_dir, self.metrics)
        self._counts: dict[str, int] = {}
        self._names: dict[str, str] = {}  # each name once: its points share the string
        self._points = 0
        self._born = self._now = time.time()  # a logged time before the reader is no time

    def read(self, final: bool = False) -> list[dict[str, Any]]:
        """Read what arrived; return the new metric points. Once a limit is passed nothing
        more is read (`flood` says why)."""
        tails = (*self._text, self._json)
        before = [t.offset for t in tails]
        self._now = time.time()  # a printed point's time: when the read found it
        new: list[dict[str, Any]] = []
        lim = self._lim

        def printed(line: bytes) -> None:
            self._text_points(line, new)

        def logged(line: bytes) -> None:
            new.extend(self._json_points(line))

        if self.flood is None:
            try:
                for tail in tails:
                    fd = tail.open()
                    if fd is None:
                        continue
                    try:
                        total = sum(t.size for t in tails)
                        if total > lim.max_log_mb * 2**20:
                            raise _Flood(
                                f"{PREFIX} {' + '.join(t.rel for t in tails)} hold "
                                f"{total / 2**20:.0f} MiB, over max_log_mb={lim.max_log_mb:g}"
                            )
                        emit = logged if tail is self._json else printed
                        tail.take(fd, emit, lim.max_line_bytes, final)
                    finally:
                        os.close(fd)
            except _Flood as flood:
                self.flood = str(flood)
        self.grew = before != [t.offset for t in tails]
        self.history.extend(new)
        return new

    def _text_points(self, line: bytes, new: list[dict[str, Any]]) -> None:
        if b"=" not in line and b":" not in line:
            return  # no pair in it: spare the pattern
        values = parse_line(line.decode("utf-8", errors="replace"))
        step = values.pop("step", None)
        if step is None:  # `epoch=3 val_acc=0.9`: the epoch is the step (and a metric)
            step = values.get("epoch")
        for name, value in values.items():
            new.append(self._point(name, value, step, "stdout"))

    def _point(
        self, name: str, value: float, step: Any, source: str, ts: Any = None
    ) -> dict[str, Any]:
        lim = self._lim
        known = self._names.get(name)
        if known is None:
            if len(name) > lim.max_metric_name:
                raise _Flood(
                    f"{PREFIX} a metric name of {len(name)} characters, over "
                    f"max_metric_name={lim.max_metric_name}"
                )
            if len(self._names) >= lim.max_metric_names:
                raise _Flood(
                    f"{PREFIX} more distinct metric names than "
                    f"max_metric_names={lim.max_metric_names}"
                )
            known = self._names[name] = name
        if self._points >= lim.max_points:
            raise _Flood(f"{PREFIX} more metric points than max_points={lim.max_points}")
        self._points += 1
        index = self._counts.get(known, 0)
        self._counts[known] = index + 1
        if isinstance(step, float) and math.isfinite(step):
            step = int(step)
        stepped = isinstance(step, int) and not isinstance(step, bool) and abs(step) <= 2**62
        if not stepped:
            step = index  # no step, or one no store column could hold
        # `stepped`: the trial named the step (only such points are compared by the pruner);
        # `ts`: when it was read, or the time nightlab.log() gave it if that is a time
        # between the reader's start and this read (a trial's output is not trusted)
        now = self._now
        ok = isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts)
        at = min(float(ts), now) if ok and self._born - 1 <= ts <= now + 1 else now
        return {"name": known, "value": value, "step": step, "source": source,
                "stepped": stepped, "ts": at}  # fmt: skip

    def _json_points(self, line: bytes) -> list[dict[str, Any]]:
        try:
            rec = json.loads(line)
            if rec.get("source") == "stdout":
                return []  # written back by nightlab at the end; stdout itself counts
            metrics = rec["metrics"]
            pairs = [(str(k), float(v)) for k, v in metrics.items()]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            return []  # a torn or foreign line; the printed output still counts
        step, ts = rec.get("step"), rec.get("ts")
        # a name with control characters (or none at all) is no metric: it is refused
        return [self._point(k, v, step, "log", ts) for k, v in pairs if k and k.isprintable()]

    def values(self, name: str) -> list[float]:
        return [p["value"] for p in self.history if p["name"] == name]

    def last(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.history:
            out[p["name"]] = p["value"]
        return out

    def diverged(self, points: list[dict[str, Any]] | None = None) -> float | None:
        """The first non-finite objective value among `points` (default: the history)."""
        for p in self.history if points is None else points:
            if p["name"] == self.objective and not math.isfinite(p["value"]):
                return p["value"]
        return None

    def reduce(self, how: str, maximize: bool) -> float | None:
        vals = [v for v in self.values(self.objective) if math.isfinite(v)]
        if not vals:
            return None
        if how == "last":
            return vals[-1]
        return max(vals) if maximize else min(vals)


PEEK_BYTES = 32768  # how much of the end of each file `peek` reads


def peek(trial_dir: Path, max_bytes: int = PEEK_BYTES) -> dict[str, float]:
    """The latest value of each metric a running trial printed or logged, from the last
    `max_bytes` of its stdout.log, stderr.log and out/metrics.jsonl alone: a bounded tail
    whatever the size of the logs (a line cut by the tail is dropped; a link or a pipe is
    not read). For views (`nightlab watch`); the loop's own reader is `MetricReader`."""
    from nightlab.store import files, paths

    out: dict[str, float] = {}
    for rel in (*LOGS, f"{paths.OUT}/{METRICS}"):
        path = Path(trial_dir) / rel
        lines = files.tail(path, max_bytes=max_bytes).split("\n")
        try:
            if path.stat().st_size > max_bytes:
                lines = lines[1:]  # the first line is cut: the tail began inside it
        except OSError:
            continue
        for line in lines:
            if rel.endswith(METRICS):
                out.update(_peek_json(line))
            elif "=" in line or ":" in line:
                out.update((k, v) for k, v in parse_line(line).items() if k != "step")
    return out


def _peek_json(line: str) -> dict[str, float]:
    try:
        rec = json.loads(line)
        if rec.get("source") == "stdout":
            return {}
        return {str(k): float(v) for k, v in rec["metrics"].items() if str(k).isprintable()}
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return {}
