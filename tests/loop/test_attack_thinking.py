"""Attacks on Thinker.close: a worker still thinking when the night ends."""

from __future__ import annotations

import os
import threading

from nightlab.agents import BaseWorker
from nightlab.agents.decision import Decision
from nightlab.loop.thinking import Thinker


class Stuck(BaseWorker):
    """An LLM-like slow worker: stop() cannot end its call (False: not waited for)."""

    name, slow = "stuck", True

    def __init__(self) -> None:
        self.release = threading.Event()

    def decide(self, context: dict) -> Decision:
        self.release.wait(10)
        return Decision(action="wait", rationale="the call came back after the night ended")


def test_a_thought_ending_after_close_writes_into_no_other_file(tmp_path):
    worker = Stuck()
    thinker = Thinker(worker, None, cfg=None)
    thinker.start({})
    wake_w = thinker._wake_w
    thinker.close()
    fds, target = [], None
    try:
        for n in range(16):  # the lowest free numbers: the pipe's, once closed
            fd = os.open(tmp_path / f"file{n}", os.O_RDWR | os.O_CREAT)
            fds.append(fd)
            if fd == wake_w:
                target = tmp_path / f"file{n}"
                break
        assert target is not None, "the pipe's number was not reused: nothing to show"
        thread = thinker._thread
        worker.release.set()
        thread.join(10)
    finally:
        for fd in fds:
            os.close(fd)
    assert target.read_bytes() == b""
