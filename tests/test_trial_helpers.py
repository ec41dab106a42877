"""The trial-side helpers: nightlab.params() and nightlab.log(), as a training script uses
them by hand and under nightlab."""

from __future__ import annotations

import json

import pytest

import nightlab
from nightlab.trials.metrics import MetricReader


@pytest.fixture(autouse=True)
def no_nightlab_env(monkeypatch):
    monkeypatch.delenv("NIGHTLAB_PARAMS", raising=False)
    monkeypatch.delenv("NIGHTLAB_METRICS", raising=False)


def test_params_by_hand_are_the_defaults():
    got = nightlab.params(lr=0.01, width=16)
    assert got == {"lr": 0.01, "width": 16}
    got["lr"] = 1.0
    assert nightlab.params(lr=0.01) == {"lr": 0.01}  # a fresh dict every time


def test_params_under_nightlab_override_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"lr": 0.05, "opt": "sgd"}))
    monkeypatch.setenv("NIGHTLAB_PARAMS", str(path))
    assert nightlab.params(lr=0.01, width=16) == {"lr": 0.05, "width": 16, "opt": "sgd"}


def test_params_file_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTLAB_PARAMS", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError):
        nightlab.params(lr=0.01)


def test_log_under_nightlab_appends_json_the_reader_understands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NIGHTLAB_METRICS", str(tmp_path / "metrics.jsonl"))
    nightlab.log(step=1, val_acc=0.5, loss=2)
    nightlab.log(val_acc=0.75)
    assert capsys.readouterr().out == ""
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"ts", "step", "metrics"}
    assert first["metrics"] == {"val_acc": 0.5, "loss": 2.0}

    reader = MetricReader(tmp_path, "val_acc")
    points = reader.read()
    assert [(p["name"], p["value"], p["step"]) for p in points] == [
        ("val_acc", 0.5, 1),
        ("loss", 2.0, 1),
        ("val_acc", 0.75, 1),
    ]
    assert reader.reduce("last", maximize=True) == 0.75


def test_log_of_a_diverged_metric_is_seen_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTLAB_METRICS", str(tmp_path / "metrics.jsonl"))
    nightlab.log(step=0, loss=float("nan"))
    reader = MetricReader(tmp_path, "loss")
    reader.read()
    assert reader.diverged() is not None


def test_log_by_hand_prints_lines_nightlab_reads(tmp_path, capsys):
    nightlab.log(step=3, val_acc=0.93, loss=0.25)
    nightlab.log(val_acc=0.95)
    out = capsys.readouterr().out
    assert out == "step=3 val_acc=0.93 loss=0.25\nval_acc=0.95\n"

    (tmp_path / "stdout.log").write_text(out)
    reader = MetricReader(tmp_path, "val_acc")
    points = reader.read()
    assert [(p["name"], p["value"], p["step"]) for p in points] == [
        ("val_acc", 0.93, 3),
        ("loss", 0.25, 3),
        ("val_acc", 0.95, 1),
    ]
