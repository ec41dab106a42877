"""Hostile review of the night's log lines: a line is one line, whatever a worker's
rationale or a trial's reason holds (a newline, a carriage return)."""

from __future__ import annotations

import logging
import sys

from nightlab.lab.cli_common import _Literal

FORGED = "the worker stopped the night: ok\n18:00:00 trial 9 (trial) succeeded → kept\rx"


def record(message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("nightlab.loop", logging.INFO, __file__, 1, message, None, exc_info)


def test_a_newline_in_a_line_cannot_print_a_forged_log_line():
    for fmt in (_Literal("%(asctime)s %(message)s", "%H:%M:%S"), _Literal("%(message)s")):
        text = fmt.format(record(FORGED))
        assert "\n" not in text and "\r" not in text, text
        assert r"ok\n18:00:00 trial 9" in text and r"kept\rx" in text


def test_a_traceback_keeps_its_lines():
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    text = _Literal("%(message)s").format(record("a line\tand tab", exc))
    assert text.startswith("a line\\tand tab\nTraceback") and "ValueError: boom" in text
