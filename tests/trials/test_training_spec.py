"""A training spec is normalised (clamps, defaults, types) before it runs, or refused with
its errors. (Spec trials in whole nights: tests/nights/test_spec_trials.py; the [spec]
config errors: tests/test_config.py.)"""

from __future__ import annotations

import pytest

from nightlab.config import Knob
from nightlab.trials.training_spec import normalize

FIELDS = {
    "lr": Knob(low=1e-4, high=1.0, log=True, default=0.1),
    "epochs": Knob(low=1, high=20, default=5),
    "optim.name": Knob(choices=["adam", "sgd"], default="adam"),
    "optim.momentum": Knob(low=0.0, high=0.99, default=0.9),
}


def test_out_of_range_values_are_clamped_and_reported():
    out = normalize(FIELDS, {"lr": 50, "epochs": 0, "optim": {"name": "sgd", "momentum": 2}})
    assert out.errors == []
    assert out.spec == {"lr": 1.0, "epochs": 1, "optim": {"name": "sgd", "momentum": 0.99}}
    assert "lr: 50.0 clamped to 1.0 (range 0.0001..1.0)" in out.notes
    assert any(n.startswith("epochs: 0 clamped to 1") for n in out.notes)
    assert any(n.startswith("optim.momentum: 2.0 clamped to 0.99") for n in out.notes)


def test_missing_fields_take_defaults_and_types_are_fixed():
    out = normalize(FIELDS, {"lr": "0.01", "epochs": 7.0})
    assert out.errors == []
    assert out.spec == {"lr": 0.01, "epochs": 7, "optim": {"name": "adam", "momentum": 0.9}}
    assert isinstance(out.spec["epochs"], int) and isinstance(out.spec["lr"], float)
    assert "optim.name missing: default 'adam'" in out.notes
    rounded = normalize(FIELDS, {"epochs": 7.6})
    assert rounded.spec["epochs"] == 8 and any("rounded to 8" in n for n in rounded.notes)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"lr": 0.1, "warmup": 3}, "unknown field 'warmup'"),
        ({"optim": {"nesterov": True}}, "unknown field 'optim.nesterov'"),
        ({"lr": "fast"}, "lr: 'fast' is not a number"),
        ({"lr": True}, "lr: True is not a number"),
        ({"lr": float("nan")}, "lr: nan is not a finite number"),
        ({"optim": {"name": "lion"}}, "optim.name: 'lion' is not one of ['adam', 'sgd']"),
        ({"epochs": [3]}, "epochs: [3] is not a number"),
    ],
)
def test_unknown_keys_and_wrong_kinds_are_rejected(raw, reason):
    out = normalize(FIELDS, raw)
    assert any(reason in e for e in out.errors), out.errors
    assert out.spec == {}


def test_odd_json_is_normalised_or_rejected_never_a_crash():
    width = {"width": Knob(choices=[16, 32, 64], default=16), **FIELDS}
    assert normalize(width, {"width": 64.0}).spec["width"] == 64  # the choice as declared
    assert type(normalize(width, {"width": 64.0}).spec["width"]) is int
    huge = normalize(FIELDS, {"lr": 10**400})
    assert huge.spec == {} and "is not a finite number" in huge.errors[0]
    empty = normalize(FIELDS, {"optim": {}})  # "defaults, please"
    assert empty.errors == [] and empty.spec["optim"] == {"name": "adam", "momentum": 0.9}
    twice = normalize(FIELDS, {"optim.name": "sgd", "optim": {"name": "adam"}})
    assert "'optim.name' is given twice" in twice.errors[0]
    assert "None is not a number" in normalize(FIELDS, {"lr": None}).errors[0]
