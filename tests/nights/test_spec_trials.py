"""Spec trials in whole nights: a lab whose spec breaks its fields fails at start, the
worker's spec edits run normalised, and a resumed night checks its spec again."""

from __future__ import annotations

import json

import pytest

from nightlab import Lab

from conftest import git, rows

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
    committed = git(lab, "show", f"{clamped['commit']}:spec.json")
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
