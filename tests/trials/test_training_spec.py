"""Spec trials: a training spec is normalised (clamps, defaults, types) before it runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from nightlab import Lab
from nightlab.config import ConfigError, Knob, load_config
from nightlab.trials.training_spec import normalize

from conftest import rows

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


SPEC_LAB = """
spec = "spec.json"

[spec.lr]
low = 0.0
high = 1.0
default = 0.1

[spec.epochs]
low = 1
high = 10
default = 2
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('spec = "spec.json"\n', "go together"),
        ("\n[spec.lr]\nlow = 0.0\nhigh = 1.0\ndefault = 0.5\n", "go together"),
        (
            SPEC_LAB + '\n[spec."lr.x"]\nlow = 0\nhigh = 1\ndefault = 0\n',
            "both a field and a group",
        ),
        ('generated = ["generated/*.py"]\n', "[smoke] input_shape"),
    ],
)
def test_config_errors_name_the_fix(make_lab, extra, message):
    lab = make_lab(trial_extra=extra)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(lab)


def test_a_lab_whose_own_spec_breaks_its_fields_fails_at_start(make_lab):
    from nightlab.trials.training_spec import SpecError

    lab = make_lab(trial_extra=SPEC_LAB)
    with pytest.raises(SpecError, match="has no spec.json"):
        Lab(lab).run(report=lambda line: None)
    (lab / "spec.json").write_text(json.dumps({"lr": 0.1, "batch": 32}))
    with pytest.raises(SpecError, match="unknown field 'batch'"):
        Lab(lab).run(report=lambda line: None)


SPEC_TRIAL = """
import json, os
spec = json.load(open(os.environ["NIGHTLAB_SPEC"]))
seed = int(os.environ["NIGHTLAB_SEED"])
print(f"score={1.0 + spec['lr'] + 0.01 * ((seed * 7) % 3 - 1)}", flush=True)
"""


@pytest.mark.slow
def test_a_night_of_spec_edits_runs_them_normalised(make_lab):
    def spec_edit(content: dict, why: str) -> dict:
        new = json.dumps(content)
        return {"action": "run", "rationale": why, "edits": [{"file": "spec.json", "search": "",
                                                               "replace": new}]}  # fmt: skip

    decisions = [
        spec_edit({"lr": 50, "epochs": 3}, "a far bigger learning rate"),
        spec_edit({"lr": 0.5, "warmup": 2}, "a warmup field the spec does not know"),
        spec_edit({"lr": 0.4}, "a smaller rate with epochs left to the default"),
    ]
    lab = make_lab(decisions=decisions, trial_extra=SPEC_LAB, max_trials=10)
    (lab / "train.py").write_text(SPEC_TRIAL)
    (lab / "spec.json").write_text(json.dumps({"lr": 0.1, "epochs": 2}))
    lines: list[str] = []
    Lab(lab).run(report=lines.append)

    trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    assert len(trials) == 2  # the unknown field never ran
    clamped, defaulted = trials
    ran = json.loads((lab / ".nightlab/trials" / str(clamped["id"]) / "spec.json").read_text())
    assert ran == {"lr": 1.0, "epochs": 3}
    assert clamped["objective"] == pytest.approx(1.99)  # the clamped rate ran (seed 0: -0.01)
    committed = subprocess.run(
        ["git", "show", f"{clamped['commit']}:spec.json"], cwd=lab, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(committed) == {"lr": 1.0, "epochs": 3}
    events = rows(lab, "SELECT trial_id, data FROM events WHERE kind='spec_normalized'")
    notes = {e["trial_id"]: json.loads(e["data"])["notes"] for e in events}
    assert notes[clamped["id"]] == ["spec.json: lr: 50.0 clamped to 1.0 (range 0.0..1.0)"]
    assert notes[defaulted["id"]] == ["spec.json: epochs missing: default 2"]
    assert any("lr: 50.0 clamped to 1.0" in line for line in lines)
    rejected = [json.loads(r[0]) for r in rows(lab, "SELECT reasons FROM decisions WHERE "
                                                    "accepted=0")]  # fmt: skip
    assert any("unknown field 'warmup'" in r for reasons in rejected for r in reasons)
    baseline = rows(lab, "SELECT id FROM trials WHERE kind='baseline' LIMIT 1")[0]["id"]
    ran = (lab / ".nightlab/trials" / str(baseline) / "spec.json").read_text()
    assert json.loads(ran) == {"lr": 0.1, "epochs": 2}


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


@pytest.mark.slow
def test_a_resumed_night_checks_its_spec_against_changed_fields(make_lab):
    from nightlab.trials.training_spec import SpecError

    lab = make_lab(trial_extra=SPEC_LAB, max_trials=3)
    (lab / "train.py").write_text(SPEC_TRIAL)
    (lab / "spec.json").write_text(json.dumps({"lr": 0.1, "epochs": 2}))
    Lab(lab).run(report=lambda line: None)
    toml = lab / "nightlab.toml"
    epochs = "[spec.epochs]\nlow = 1\nhigh = 10\ndefault = 2\n"
    toml.write_text(toml.read_text().replace(epochs, ""))
    with pytest.raises(SpecError, match="unknown field 'epochs'"):
        Lab(lab).run(max_trials=5, report=lambda line: None)
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status='running'")[0][0] == 0
    assert rows(lab, "SELECT COUNT(*) FROM trials")[0][0] == 3  # nothing half-started
