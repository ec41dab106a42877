"""A finish-up request: when its window opens and closes. (Finish-up in whole nights, and
the `finishup` command: tests/nights/test_finishup.py.)"""

from __future__ import annotations

import pytest

from nightlab.loop.finish_request import FinishUpError, request


def test_run_hours_fix_the_window_when_the_night_starts():
    wanted = request(run_hours=8, minutes_left=60, now=1000.0)
    assert wanted.window(None) == (None, None)
    assert wanted.window(5000.0) == (5000.0 + 7 * 3600, 5000.0 + 8 * 3600)
    assert request(minutes_left=10, now=0.0).window(None) == (0.0, 600.0)
    assert request(in_minutes=5, minutes_left=10, now=0.0).window(None) == (300.0, 900.0)
    with pytest.raises(FinishUpError, match="--in-minutes must be 0 or more"):
        request(in_minutes=-1)
