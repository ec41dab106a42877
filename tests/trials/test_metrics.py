"""Reading a trial's metrics: printed `name=value` lines and nightlab.log()'s JSON lines,
followed incrementally while the trial still writes them."""

from __future__ import annotations

import json
import math

import pytest

from nightlab.trials.metrics import MetricReader, parse_line

# parse_line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("val_acc=0.93", {"val_acc": 0.93}),
        ("val_acc: 0.93", {"val_acc": 0.93}),
        ("val_acc = 0.93", {"val_acc": 0.93}),
        ("epoch=3 loss=0.5 val_acc=0.9", {"epoch": 3.0, "loss": 0.5, "val_acc": 0.9}),
        ("loss=0.5, acc=0.9", {"loss": 0.5, "acc": 0.9}),
        ("Epoch 3/10 - loss: 0.123 - acc: 0.9", {"loss": 0.123, "acc": 0.9}),
        ("lr=1e-4", {"lr": 1e-4}),
        ("lr=1.5E+03", {"lr": 1500.0}),
        ("lr=.5", {"lr": 0.5}),
        ("delta=-0.25", {"delta": -0.25}),
        ("x=+3", {"x": 3.0}),
        ("train/loss=0.3 val.acc=0.8", {"train/loss": 0.3, "val.acc": 0.8}),
        ("2024-01-01 12:30:45 INFO val_acc=0.9", {"val_acc": 0.9}),
        ("[val_acc=0.9]", {"val_acc": 0.9}),
        (
            "Epoch 0: 100%|####| 10/10 [00:01<00:00,  5.00it/s, v_num=0, val_acc=0.900]",
            {"v_num": 0.0, "val_acc": 0.9},
        ),
    ],
)
def test_parse_line_reads_pairs(line, expected):
    assert parse_line(line) == expected


def test_parse_line_reads_non_finite_values():
    out = parse_line("epoch=3 loss=nan")
    assert out["epoch"] == 3.0
    assert math.isnan(out["loss"])
    assert math.isnan(parse_line("loss=NaN")["loss"])
    assert parse_line("x=inf y=-inf z=Infinity") == {"x": math.inf, "y": -math.inf, "z": math.inf}


@pytest.mark.parametrize(
    "line",
    [
        "http://x:8080",
        "see https://host:443/path",
        "version 1.2.3",
        "v=1.2.3",
        "ip=10.0.0.1",
        "name=abc",
        "loss=0.5s",
        "loss=infection",
        "a==1",
        "1abc=2",
        "x=1e",
        "training started",
        "",
    ],
)
def test_parse_line_ignores_text_that_is_not_a_metric(line):
    assert parse_line(line) == {}


def test_parse_line_ignores_clock_times():
    assert parse_line("elapsed: 0:01:23") == {}
    assert parse_line("time: 12:30:45") == {}


def test_parse_line_reads_a_value_that_ends_a_sentence():
    assert parse_line("done, val_acc=0.93.") == {"val_acc": 0.93}


# MetricReader --------------------------------------------------------------------------------


def append(path, text: str) -> None:
    with open(path, "a", newline="") as fh:
        fh.write(text)


def test_reader_without_files_reads_nothing(tmp_path):
    reader = MetricReader(tmp_path, "val_acc")
    assert reader.read() == []
    assert reader.grew is False
    assert reader.reduce("last", maximize=True) is None
    assert reader.diverged() is None


def test_reader_waits_for_the_end_of_a_partial_line(tmp_path):
    out = tmp_path / "stdout.log"
    reader = MetricReader(tmp_path, "val_acc")
    append(out, "val_acc=0.9")
    assert reader.read() == []  # could still become 0.93
    assert reader.grew is True
    append(out, "3\n")
    new = reader.read()
    assert [(p["name"], p["value"]) for p in new] == [("val_acc", 0.93)]
    assert reader.read() == []
    assert reader.grew is False
    assert reader.values("val_acc") == [0.93]


def test_final_read_takes_the_unterminated_last_line(tmp_path):
    out = tmp_path / "stdout.log"
    reader = MetricReader(tmp_path, "val_acc")
    append(out, "val_acc=0.5\nval_acc=0.7")
    assert reader.values("val_acc") == []
    reader.read()
    assert reader.values("val_acc") == [0.5]
    reader.read(final=True)
    assert reader.values("val_acc") == [0.5, 0.7]


def test_reader_splits_carriage_return_progress_lines(tmp_path):
    out = tmp_path / "stdout.log"
    reader = MetricReader(tmp_path, "loss")
    append(out, "epoch=1 loss=0.5\repoch=2 loss=0.4\r")
    reader.read()
    append(out, "\nepoch=3 loss=0.3\r\n")
    reader.read()
    assert reader.values("loss") == [0.5, 0.4, 0.3]
    assert reader.values("epoch") == [1.0, 2.0, 3.0]


def test_a_points_step_is_named_by_step_else_epoch_else_only_its_order(tmp_path):
    out = tmp_path / "stdout.log"
    reader = MetricReader(tmp_path, "loss")
    append(out, "epoch=5 loss=0.5\nstep=40 epoch=6 loss=0.4\nloss=0.3\nstep=nan loss=0.2\n")
    reader.read()
    got = [(p["step"], p["stepped"]) for p in reader.history if p["name"] == "loss"]
    # the pruner compares only named steps: an unnamed one is its order, not a step
    assert got == [(5, True), (40, True), (2, False), (3, False)]


def test_reader_follows_stdout_and_stderr(tmp_path):
    reader = MetricReader(tmp_path, "val_acc")
    append(tmp_path / "stdout.log", "val_acc=0.5\n")
    append(tmp_path / "stderr.log", "train_loss=1.5\n")
    reader.read()
    assert reader.last() == {"val_acc": 0.5, "train_loss": 1.5}


def test_printed_step_becomes_the_step_not_a_metric(tmp_path):
    reader = MetricReader(tmp_path, "val_acc")
    append(tmp_path / "stdout.log", "step=10 val_acc=0.5\nval_acc=0.6\n")
    new = reader.read()
    assert [p["name"] for p in new] == ["val_acc", "val_acc"]
    assert new[0]["step"] == 10
    assert new[1]["step"] == 1  # no step printed: the metric's own count
    assert all(p["source"] == "stdout" for p in new)
    assert "step" not in reader.last()


def test_reader_reads_nightlab_log_json_lines(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    reader = MetricReader(tmp_path, "val_acc")
    append(jsonl, json.dumps({"ts": 1.0, "step": 3, "metrics": {"val_acc": 0.8, "loss": 0.4}}))
    append(jsonl, "\n")
    append(jsonl, json.dumps({"ts": 2.0, "step": None, "metrics": {"val_acc": 0.85}}) + "\n")
    new = reader.read()
    assert [(p["name"], p["value"], p["step"], p["source"]) for p in new] == [
        ("val_acc", 0.8, 3, "log"),
        ("loss", 0.4, 3, "log"),
        ("val_acc", 0.85, 1, "log"),
    ]


def test_json_lines_written_back_from_stdout_are_not_counted_twice(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    append(jsonl, json.dumps({"step": 0, "metrics": {"val_acc": 0.1}, "source": "stdout"}) + "\n")
    append(jsonl, json.dumps({"step": 1, "metrics": {"val_acc": 0.2}}) + "\n")
    reader = MetricReader(tmp_path, "val_acc")
    reader.read()
    assert reader.values("val_acc") == [0.2]


def test_torn_and_foreign_json_lines_are_ignored(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    append(jsonl, '{"ts": 1.0, "step": 0, "metr\n')
    append(jsonl, "not json at all\n")
    append(jsonl, "[1, 2]\n")
    append(jsonl, '{"ts": 1.0, "metrics": {"val_acc": "high"}}\n')
    append(jsonl, '{"ts": 1.0, "values": {"val_acc": 0.3}}\n')
    append(jsonl, json.dumps({"ts": 2.0, "step": 1, "metrics": {"val_acc": 0.5}}) + "\n")
    reader = MetricReader(tmp_path, "val_acc")
    reader.read()
    assert reader.values("val_acc") == [0.5]


def test_json_line_written_in_two_parts_is_read_once_complete(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    line = json.dumps({"ts": 1.0, "step": 2, "metrics": {"val_acc": 0.75}}) + "\n"
    reader = MetricReader(tmp_path, "val_acc")
    append(jsonl, line[:20])
    assert reader.read() == []
    append(jsonl, line[20:])
    assert [p["value"] for p in reader.read()] == [0.75]


def history_of(tmp_path, values: list[str]) -> MetricReader:
    append(tmp_path / "stdout.log", "".join(f"val_acc={v}\n" for v in values))
    reader = MetricReader(tmp_path, "val_acc")
    reader.read()
    return reader


def test_reduce_last_and_best(tmp_path):
    reader = history_of(tmp_path, ["0.5", "0.9", "0.7"])
    assert reader.reduce("last", maximize=True) == 0.7
    assert reader.reduce("last", maximize=False) == 0.7
    assert reader.reduce("best", maximize=True) == 0.9
    assert reader.reduce("best", maximize=False) == 0.5
    assert reader.diverged() is None


def test_reduce_skips_non_finite_values_and_diverged_reports_them(tmp_path):
    reader = history_of(tmp_path, ["0.5", "0.9", "nan", "0.7", "inf"])
    assert reader.reduce("last", maximize=True) == 0.7
    assert reader.reduce("best", maximize=True) == 0.9
    assert math.isnan(reader.diverged())


def test_reduce_without_a_finite_objective_is_none(tmp_path):
    reader = history_of(tmp_path, ["nan"])
    assert reader.reduce("last", maximize=True) is None
    assert reader.reduce("best", maximize=False) is None
    assert math.isnan(reader.diverged())


def test_other_metrics_do_not_count_as_the_objective(tmp_path):
    append(tmp_path / "stdout.log", "loss=nan val_acc=0.6\n")
    reader = MetricReader(tmp_path, "val_acc")
    reader.read()
    assert reader.diverged() is None
    assert reader.reduce("last", maximize=True) == 0.6


def test_a_point_keeps_the_time_it_was_read_or_its_own_sane_ts(tmp_path):
    import time

    reader = MetricReader(tmp_path, "loss")
    now = time.time()
    lines = [{"ts": now - 0.5, "step": 1, "metrics": {"loss": 1.0}},  # within 1 s slack: kept
             {"ts": 1e300, "step": 2, "metrics": {"loss": 0.5}},  # absurd: the read time
             {"ts": "x", "step": 3, "metrics": {"loss": 0.4}}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "stdout.log").write_text("loss=0.3\n")
    got = reader.read(final=True)
    read_at = time.time()
    assert all(now - 1.5 <= p["ts"] <= read_at for p in got)
    assert {p["step"]: p["ts"] for p in got}[1] == pytest.approx(now - 0.5)  # its own ts
    assert {p["step"]: p["ts"] for p in got}[2] >= now  # refused: when it was read
