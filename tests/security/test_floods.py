"""Bounded input ([limits]): a trial that floods its output, or puts a link or a pipe where
the loop reads its logs, is killed (`killed`, reason `output_flood: ...` naming the limit),
and neither the loop's memory nor what the store keeps grows with what the trial printed.

The reader's tests use small limits and files written here; the night's run real trials
that print 300 MB without a newline, millions of metric lines and 1 MB metric names, in a
loop of its own (a subprocess) whose peak memory is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nightlab.config import ConfigError, LimitsSection, load_config
from nightlab.trials.local import limit_broken
from nightlab.trials.metrics import MetricReader

from conftest import build_lab, rows


def append(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def reader_of(tmp_path: Path, **limits) -> MetricReader:
    return MetricReader(tmp_path, "score", limits=LimitsSection(**limits))


def read_with_deadline(reader: MetricReader, final: bool = False, seconds: float = 5) -> list:
    """reader.read(), failing (not hanging) if it blocks."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(reader.read(final)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the reader blocked"
    return out[0]


# the limits, one by one ----------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    lim = LimitsSection()
    assert (lim.max_line_bytes, lim.max_metric_name, lim.max_metric_names) == (2**20, 200, 1000)
    assert (lim.max_points, lim.max_log_mb) == (200_000, 1024)
    assert MetricReader(Path("/nonexistent"), "score").read() == []  # None: the defaults


LAB_TOML = """
[lab]
name = "t"

[objective]
metric = "score"
direction = "maximize"

[trial]
command = "python train.py"

[limits]
"""


def test_limits_are_set_in_nightlab_toml(tmp_path):
    (tmp_path / "IDEA.md").write_text("x\n")
    toml = tmp_path / "nightlab.toml"
    toml.write_text(LAB_TOML + "max_points = 1000\nmax_log_mb = 0.5\nmax_metric_name = 64\n")
    cfg = load_config(tmp_path)
    assert (cfg.limits.max_points, cfg.limits.max_log_mb, cfg.limits.max_metric_name) == (
        1000,
        0.5,
        64,
    )
    assert cfg.limits.max_line_bytes == 2**20  # the others keep their defaults
    reader = MetricReader(tmp_path, "score", limits=cfg.limits)
    append(tmp_path / "stdout.log", "score=1\n" * 1001)
    reader.read()
    assert reader.flood == "output_flood: more metric points than max_points=1000"
    toml.write_text(LAB_TOML + "max_point = 10\n")
    with pytest.raises(ConfigError, match="did you mean 'max_points'"):
        load_config(tmp_path)
    toml.write_text(LAB_TOML + "max_line_bytes = 10\n")
    with pytest.raises(ConfigError, match=r"\[limits\] max_line_bytes"):
        load_config(tmp_path)


def test_an_over_long_line_is_never_held_and_floods(tmp_path):
    reader = reader_of(tmp_path, max_line_bytes=1024)
    append(tmp_path / "stdout.log", "score=1\n" + "x" * 1000)
    assert [p["value"] for p in reader.read()] == [1.0]
    assert reader.flood is None and len(reader._text[0].partial) == 1000
    append(tmp_path / "stdout.log", "x" * 100_000 + "\nscore=2\n")
    assert reader.read() == []
    assert reader.flood == ("output_flood: a line of stdout.log is longer than max_line_bytes=1024")
    assert reader._text[0].partial == b""
    append(tmp_path / "stdout.log", "score=3\n")
    assert reader.read() == [] and reader.read(final=True) == []  # nothing more is read
    assert reader.values("score") == [1.0]


def test_a_complete_over_long_line_floods_too(tmp_path):
    reader = reader_of(tmp_path, max_line_bytes=1024)
    append(tmp_path / "metrics.jsonl", json.dumps({"metrics": {"a": 1.0, "b": "x" * 2000}}))
    append(tmp_path / "metrics.jsonl", "\n")
    reader.read()
    assert reader.flood and "a line of metrics.jsonl" in reader.flood


def test_a_long_metric_name_floods(tmp_path):
    reader = reader_of(tmp_path, max_metric_name=20)
    append(tmp_path / "stdout.log", "score=1 " + "n" * 21 + "=2\n")
    new = reader.read()
    assert [p["name"] for p in new] == ["score"]
    assert reader.flood == "output_flood: a metric name of 21 characters, over max_metric_name=20"


def test_a_long_logged_name_floods(tmp_path):
    reader = reader_of(tmp_path)
    append(tmp_path / "metrics.jsonl", json.dumps({"metrics": {"n" * 201: 1.0}}) + "\n")
    assert reader.read() == [] and reader.last() == {}
    assert "over max_metric_name=200" in reader.flood


def test_logged_names_with_control_characters_are_refused(tmp_path):
    reader = reader_of(tmp_path)
    names = {"score": 1.0, "a\nb": 2.0, "c\x1b[31m": 3.0, "": 4.0, "d\u2028e": 5.0, "é/ok": 6.0}
    append(tmp_path / "metrics.jsonl", json.dumps({"metrics": names}) + "\n")
    reader.read()
    assert reader.last() == {"score": 1.0, "é/ok": 6.0} and reader.flood is None


def test_too_many_distinct_names_flood(tmp_path):
    reader = reader_of(tmp_path, max_metric_names=5)
    append(tmp_path / "stdout.log", "".join(f"m{i}=1\n" for i in range(5)) + "m0=2\n")
    assert len(reader.read()) == 6 and reader.flood is None
    append(tmp_path / "stdout.log", "m5=1\n")
    assert reader.read() == []
    assert reader.flood == "output_flood: more distinct metric names than max_metric_names=5"
    assert len(reader.last()) == 5


def test_points_stop_at_max_points(tmp_path):
    reader = reader_of(tmp_path, max_points=100)
    append(tmp_path / "stdout.log", "loss=1 score=2\n" * 70)
    reader.read()
    assert len(reader.history) == 100
    assert reader.flood == "output_flood: more metric points than max_points=100"


def test_logs_over_max_log_mb_flood_before_they_are_read(tmp_path):
    reader = reader_of(tmp_path, max_log_mb=0.01)  # 10 KiB
    append(tmp_path / "stdout.log", "score=1\n")
    reader.read()
    with open(tmp_path / "stderr.log", "wb") as fh:
        fh.truncate(2**40)  # a sparse 1 TiB file: never read
    assert reader.read() == []
    assert reader.flood.startswith("output_flood: stdout.log + stderr.log + metrics.jsonl hold")
    assert reader.flood.endswith("over max_log_mb=0.01")


def test_flood_kills_through_limit_broken(tmp_path):
    reader = reader_of(tmp_path, max_points=100)
    spec = SimpleNamespace(metric="score", budget_s=60, hang_s=None)
    trial = SimpleNamespace(spec=spec, reader=reader, started_at=time.time(), last_output=0)
    assert limit_broken(trial, time.time(), reader.read()) is None
    append(tmp_path / "stdout.log", "score=1\n" * 101)
    assert limit_broken(trial, time.time(), reader.read()) == (
        "killed",
        "output_flood: more metric points than max_points=100",
    )


# where the files are ---------------------------------------------------------------------------


def test_followed_files_are_given_relative_to_the_trial(tmp_path):
    reader = MetricReader(tmp_path, "score", logs=("out.txt",), metrics="out/metrics.jsonl")
    append(tmp_path / "stdout.log", "ignored=1\n")
    append(tmp_path / "out.txt", "score=1\n")
    append(tmp_path / "out" / "metrics.jsonl", json.dumps({"metrics": {"loss": 0.5}}) + "\n")
    reader.read()
    assert reader.last() == {"score": 1.0, "loss": 0.5}
    for bad in ("../x", "/etc/passwd", "a//b", "./x", ""):
        with pytest.raises(ValueError):
            MetricReader(tmp_path, "score", metrics=bad)


# links and pipes the trial puts where its logs were -----------------------------------------


def test_a_link_to_dev_zero_is_not_followed(tmp_path):
    (tmp_path / "stdout.log").symlink_to("/dev/zero")
    reader = reader_of(tmp_path)
    assert read_with_deadline(reader) == []
    assert reader.flood.startswith("output_flood: stdout.log is not a plain file")


def test_a_link_to_a_file_of_metrics_is_not_read(tmp_path):
    secret = tmp_path / "elsewhere" / "shadow"
    append(secret, "score=0.99\n")
    (tmp_path / "trial").mkdir()
    (tmp_path / "trial" / "metrics.jsonl").symlink_to(secret)
    reader = reader_of(tmp_path / "trial")
    assert read_with_deadline(reader, final=True) == []
    assert "metrics.jsonl is not a plain file" in reader.flood


def test_a_linked_folder_on_the_way_is_not_followed(tmp_path):
    other = tmp_path / "other"
    append(other / "metrics.jsonl", json.dumps({"metrics": {"score": 0.99}}) + "\n")
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "out").symlink_to(other)
    reader = MetricReader(trial, "score", metrics="out/metrics.jsonl")
    assert read_with_deadline(reader) == []
    assert reader.flood.startswith("output_flood: out/metrics.jsonl is not a plain file")


def test_a_fifo_does_not_block_the_reader(tmp_path):
    os.mkfifo(tmp_path / "stderr.log")
    reader = reader_of(tmp_path)
    assert read_with_deadline(reader, final=True) == []
    assert reader.flood == "output_flood: stderr.log is not a plain file (a pipe or a device)"


def test_a_fifo_with_a_writer_does_not_block_the_reader(tmp_path):
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import time; f = open({str(fifo)!r}, 'w'); time.sleep(30)"]
    )
    try:
        deadline = time.time() + 10
        reader = reader_of(tmp_path)
        while time.time() < deadline and reader.flood is None:
            read_with_deadline(reader)  # blocks neither before the writer opens nor after
        assert "metrics.jsonl is not a plain file" in reader.flood
    finally:
        writer.kill()
        writer.wait()


# whole nights: real trials flood, a loop of its own is measured ---------------------------------

FLOOD_TRIAL = """
import json, os, sys, time
mode = json.load(open(os.environ["NIGHTLAB_PARAMS"])).get("mode", "ok")
print("starting", flush=True)
if mode == "line":  # 300 MB without a newline
    block = "x" * 2**20
    for _ in range(300):
        sys.stdout.write(block)
    sys.stdout.flush()
elif mode == "lines":  # millions of metric lines (about 60 MB)
    for i in range(2_000_000):
        sys.stdout.write(f"step={i} loss=0.5 score=0.25\\n")
    sys.stdout.flush()
elif mode == "names":  # 10k distinct names of 1 MB each, as nightlab.log() writes them
    with open(os.environ["NIGHTLAB_METRICS"], "a") as fh:
        for i in range(10_000):
            name = str(i) + "n" * 1_000_000
            fh.write(json.dumps({"ts": time.time(), "step": i, "metrics": {name: 1.0}}) + "\\n")
            fh.flush()
elif mode == "many":  # 10k distinct short names
    with open(os.environ["NIGHTLAB_METRICS"], "a") as fh:
        for i in range(10_000):
            fh.write(json.dumps({"step": 0, "metrics": {f"m{i}": 1.0}}) + "\\n")
            fh.flush()
else:
    print("score=1.0", flush=True)
    sys.exit(0)
time.sleep(120)  # a flood that the loop missed would end in a timeout
"""

# VmHWM, not ru_maxrss: the latter keeps the forking parent's size across exec (a pytest
# process of 700 MB would pass for the loop's peak)
RUN_LOOP = """
import re, sys
from pathlib import Path
from nightlab import Lab
Lab(sys.argv[1]).run(report=lambda line: None)
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""

NIGHT = [  # (mode, the reason's start)
    ("line", "output_flood: a line of stdout.log is longer than max_line_bytes=1048576"),
    ("lines", "output_flood: more metric points than max_points=200000"),
    ("names", "output_flood: a metric name of 1000001 characters, over max_metric_name=200"),
    ("many", "output_flood: more distinct metric names than max_metric_names=1000"),
]
MAX_LOOP_RSS_MB = 300


@pytest.mark.slow
def test_flooding_trials_are_killed_and_the_loop_stays_small(tmp_path):
    lab = build_lab(
        tmp_path / "lab",
        decisions=[
            {
                "action": "run",
                "rationale": f"a trial that floods its output ({m})",
                "params": {"mode": m},
            }
            for m, _ in NIGHT
        ],
        modes=[m for m, _ in NIGHT],
        max_trials=10,
        budget=60,
        trial=FLOOD_TRIAL,
        baseline_repeats=1,
    )
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", RUN_LOOP, str(lab)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mb = int(done.stdout.split()[-1])
    print(f"loop peak RSS {peak_mb} MB, night {time.time() - started:.1f} s")
    assert peak_mb < MAX_LOOP_RSS_MB

    trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    assert len(trials) == len(NIGHT)
    for t, (mode, reason) in zip(trials, NIGHT, strict=True):
        assert (t["status"], t["reason"]) == ("killed", reason), mode
        assert t["wall_s"] < 30, mode  # killed while flooding, not at its budget
        folder = lab / ".nightlab" / "trials" / str(t["id"])
        result = (folder / "result.json").read_text()
        assert len(result) < 100_000, (mode, len(result))
        metrics = json.loads(t["metrics"] or "{}")
        assert len(metrics) <= 1000 and all(len(name) <= 200 for name in metrics), mode
        assert len(t["log_tail"] or "") < 40_000, mode
        names = set()
        with open(folder / "metrics.jsonl") as fh:
            for line in fh:
                names.update(json.loads(line)["metrics"])
        assert len(names) <= 1000 and all(len(name) <= 200 for name in names), mode
    by_mode = {m: t for (m, _), t in zip(NIGHT, trials, strict=True)}
    assert (lab / ".nightlab" / "trials" / str(by_mode["lines"]["id"]) / "metrics.jsonl").stat(
    ).st_size < 20 * 2**20  # fmt: skip
