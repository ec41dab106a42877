"""The live curve's reader (trials/curve.py) on hostile output: NaN, inf, huge numbers,
10^6 points, a 50 MB line, logged and printed points, links: bounded in time and size, only
finite numbers out."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from nightlab.trials import curve


def folder(tmp_path: Path) -> Path:
    d = tmp_path / "trial"
    (d / "out").mkdir(parents=True)
    return d


def test_printed_points_with_steps_keep_the_last_and_drop_what_is_not_finite(tmp_path):
    d = folder(tmp_path)
    lines = [f"step={i} score={i / 10}" for i in range(1000)]
    lines[500:500] = ["score=nan", "score=inf step=3", "score=-inf", "step=nan score=1e999"]
    lines.append("other=5 scores=7 my_score=9")  # other names, never matched
    (d / "stdout.log").write_text("\n".join(lines) + "\n")
    got = curve.recent(d, "score")
    assert got["source"] == "stdout" and len(got["y"]) == curve.CURVE_POINTS
    assert got["x"][-1] == 999 and got["y"][-1] == 99.9
    assert all(math.isfinite(v) for v in got["x"] + got["y"])
    json.dumps(got, allow_nan=False)


def test_logged_points_win_and_unordered_steps_fall_back_to_order(tmp_path):
    d = folder(tmp_path)
    (d / "stdout.log").write_text("score=1\nscore=2\n")
    recs = [{"step": s, "metrics": {"score": v}} for s, v in ((5, 1.0), (2, 2.0), (9, 1e308))]
    recs.append({"step": 1, "metrics": {"score": "NaN"}})
    recs.append({"metrics": {"score": 3.0}, "source": "stdout"})  # a copy of a printed line
    body = "\n".join(json.dumps(r) for r in recs) + "\n[[[[[[" + "[" * 100_000 + "\n{bad json\n"
    (d / "out" / "metrics.jsonl").write_text(body)
    got = curve.recent(d, "score")
    assert got["source"] == "metrics.jsonl"
    assert got["y"] == [1.0, 2.0, 1e308] and got["x"] == [0, 1, 2]  # steps went back


def test_a_flood_is_read_in_bounded_time(tmp_path):
    d = folder(tmp_path)
    with (d / "stdout.log").open("w") as f:  # 10^6 points, then a 50 MB line
        f.writelines(f"step={i} score={i}\n" for i in range(1_000_000))
        f.write("score=1 " * ((50 << 20) // 8))
    (d / "stderr.log").write_bytes(os.urandom(4 << 20))
    started = time.perf_counter()
    got = curve.recent(d, "score")
    took = time.perf_counter() - started
    assert took < 1.0, took
    assert got["y"] == []  # the tail lies inside the 50 MB line: nothing of it is read
    with (d / "stdout.log").open("a") as f:
        f.write("\n" + "".join(f"step={i} score={i}\n" for i in range(10)))
    assert curve.recent(d, "score")["y"] == [float(i) for i in range(10)]


def test_a_link_or_a_missing_file_gives_no_points(tmp_path):
    d = folder(tmp_path)
    secret = tmp_path / "secret.log"
    secret.write_text("score=42\n")
    (d / "stdout.log").symlink_to(secret)
    assert curve.recent(d, "score") == {"x": [], "y": [], "source": None}
    assert curve.recent(tmp_path / "nowhere", "score")["y"] == []
