"""The worker's turn, off the loop's thread: while a model (or a coding agent) thinks, the
loop keeps watching its trials (budgets, hangs, freed slots) and a decision planned while
every slot is busy is ready the moment one frees.

A `Thinker` runs one thought at a time: the worker's decision, then the mentor's review of it
when one is due. It touches neither the store nor the loop's state; the loop records what it
returns. Workers that answer at once (Optuna, replay) think inline: no thread, no delay.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from nightlab.agents.decision import Decision
from nightlab.config import Config

STOP_WAIT_S = 15.0  # how long close() waits for a stopped worker's thread to return


@dataclass
class Thought:
    """One worker decision (or the error it raised) and, if due, the mentor's review."""

    decision: Decision | Exception
    usage: dict[str, Any] | None  # the worker's call, priced
    why: str | None = None  # why the mentor was asked; None: no review
    review: Any = None  # the mentor's Review, or the Exception it raised
    mentor_usage: dict[str, Any] | None = None


def priced(agent: Any, cfg: Config) -> dict[str, Any] | None:
    """An agent's last call: its tokens and, where [agents.prices] has it, its cost."""
    usage = agent.last_usage
    if not usage:
        return None
    price = cfg.agents.prices.get(agent.name)
    usd = None
    if price is not None:
        usd = (
            usage["input_tokens"] * price.input_per_mtok
            + usage["output_tokens"] * price.output_per_mtok
        ) / 1e6
    return {**usage, "usd": usd, "worker": agent.name}


class Thinker:
    def __init__(self, worker: Any, mentor: Any, cfg: Config) -> None:
        self.worker, self.mentor, self.cfg = worker, mentor, cfg
        self.inline = not worker.slow
        self._thread: threading.Thread | None = None
        self._result: Thought | None = None
        self._wake_r, self._wake_w = os.pipe()  # readable once a thought is ready
        self._lock, self._closed = threading.Lock(), False

    @property
    def idle(self) -> bool:
        """No thought in progress and none waiting to be taken."""
        return self._thread is None and self._result is None

    def ready(self) -> bool:
        return self._result is not None

    def fileno(self) -> int:
        """An fd that turns readable when the thought in progress is ready (for select)."""
        return self._wake_r

    def start(self, context: dict[str, Any], review: tuple[str, str] | None = None) -> None:
        """Think about `context`; with `review` = (why, the mentor's prompt), the mentor
        reviews the decision."""
        if not self.idle:
            raise RuntimeError("a thought is already in progress")
        if self.inline:
            self._result = self._think(context, review)
            return
        self._thread = threading.Thread(
            target=self._run, args=(context, review), daemon=True, name="nightlab-worker"
        )
        self._thread.start()

    def take(self) -> Thought:
        """The ready thought (call only when `ready()`); the thinker is idle again."""
        thought, self._result, self._thread = self._result, None, None
        if thought is None:
            raise RuntimeError("no thought is ready")
        try:
            while os.read(self._wake_r, 64) if _readable(self._wake_r) else b"":
                pass
        except OSError:
            pass
        return thought

    def close(self) -> Thought | None:
        """Stop thinking: the worker ends what it runs (a coding agent's whole tree) before
        the loop goes on; the thought ready but never taken, if any (its tokens were spent
        all the same)."""
        if self.worker.stop() and self._thread is not None:
            self._thread.join(STOP_WAIT_S)
        with self._lock:  # a thread still thinking must not write into a reused fd
            self._closed = True
            thought, self._result = self._result, None
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return thought

    def _run(self, context: dict[str, Any], review: tuple[str, str] | None) -> None:
        thought = self._think(context, review)
        with self._lock:
            if self._closed:
                return  # the loop has ended; its fds may be another file's by now
            self._result = thought
            os.write(self._wake_w, b"!")

    def _think(self, context: dict[str, Any], review: tuple[str, str] | None) -> Thought:
        try:
            decision: Decision | Exception = self.worker.decide(context)
        except Exception as exc:  # a worker failure is a wait cycle, never a dead night
            decision = exc
        thought = Thought(decision, priced(self.worker, self.cfg))
        if review is not None:
            self.review(thought, *review)
        return thought

    def review(self, thought: Thought, why: str, prompt: str) -> None:
        """The mentor reviews the thought's decision now (in the caller's thread)."""
        if self.mentor is None or isinstance(thought.decision, Exception):
            return
        thought.why = why
        try:
            thought.review = self.mentor.review(prompt, thought.decision, why)
        except Exception as exc:  # no review this cycle; the night goes on
            thought.review = exc
        thought.mentor_usage = priced(self.mentor, self.cfg)


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])
