"""nightlab.toml loading: the example lab loads, and every mistake a user can make fails with
a message that names the key, the file and the fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from nightlab.config import ConfigError, Knob, load_config

from conftest import make_config

REPO = Path(__file__).resolve().parents[1]

BASE = """\
[lab]
name = "t"

[objective]
metric = "val_acc"
direction = "maximize"

[trial]
command = "python train.py"
"""


def write_lab(lab: Path, toml: str, files: tuple[str, ...] = ("IDEA.md",)) -> Path:
    lab.mkdir(parents=True, exist_ok=True)
    for name in files:
        (lab / name).parent.mkdir(parents=True, exist_ok=True)
        (lab / name).write_text("x\n")
    (lab / "nightlab.toml").write_text(toml)
    return lab


def load_error(lab: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    return str(info.value)


def with_trial_key(line: str) -> str:
    return BASE + line + "\n"


# the example ---------------------------------------------------------------------------------


def test_digits_example_loads():
    cfg = load_config(REPO / "examples" / "digits")
    assert cfg.lab.name == "digits"
    assert cfg.objective.metric == "val_acc"
    assert cfg.objective.direction == "maximize"
    assert cfg.trial.editable == ["train.py"]
    assert set(cfg.search) == {"lr", "width", "dropout", "epochs", "weight_decay"}
    assert cfg.search["lr"].log is True
    assert cfg.search["width"].kind == "categorical"
    assert cfg.search["epochs"].kind == "int"
    assert cfg.defaults()["width"] == 16
    # every default lies inside its own clamp (the baseline trial must pass the gate)
    assert cfg.param_violations(cfg.defaults()) == []


def test_minimal_lab_loads(tmp_path):
    lab = write_lab(tmp_path / "lab", BASE)
    cfg = load_config(lab)
    assert cfg.lab.brief == "IDEA.md"
    assert cfg.trial.budget_seconds == 3600
    assert cfg.ratchet.baseline_repeats == 3
    assert cfg.agents.worker == "search"
    assert cfg.search == {}


# key errors ----------------------------------------------------------------------------------


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    lab = write_lab(tmp_path / "lab", with_trial_key('comand = "python x.py"'))
    msg = load_error(lab)
    assert "comand" in msg
    assert str(lab / "nightlab.toml") in msg
    assert "did you mean 'command'" in msg


def test_unknown_knob_key_suggests_the_knob_field(tmp_path):
    toml = BASE + "[search.lr]\nlowe = 0.1\nhigh = 1.0\ndefault = 0.5\n"
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "[search.lr] lowe" in msg
    assert "did you mean 'low'" in msg


def test_unknown_section_lists_known_sections(tmp_path):
    msg = load_error(write_lab(tmp_path / "lab", BASE + "[bogus]\nx = 1\n"))
    assert "unknown key [bogus]" in msg
    assert "objective" in msg and "trial" in msg


def test_missing_required_key_is_named(tmp_path):
    toml = BASE.replace('metric = "val_acc"\n', "")
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "missing required key [objective] metric" in msg
    assert "nightlab.toml" in msg


def test_missing_section_is_named(tmp_path):
    toml = BASE.split("[trial]")[0]
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "missing required key [trial]" in msg


def test_negative_budget_is_named_with_its_value(tmp_path):
    msg = load_error(write_lab(tmp_path / "lab", with_trial_key("budget_seconds = -1")))
    assert "[trial] budget_seconds" in msg
    assert "greater than 0" in msg
    assert "got -1" in msg


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("confirm_runs = -1", "greater than or equal to 0"),
        ("confirm_runs = 100000", "less than or equal to 20"),
        ("confirm_runs = 1.5", "valid integer"),
        ("sigma_confidence = 1.0", "less than 1"),
        ("sigma_confidence = 0.2", "greater than or equal to 0.5"),
        ("screen_multiplier = 1e308", "less than or equal to 100"),
        ("sigma_multiplier = -2", "greater than or equal to 0"),
    ],
)
def test_ratchet_settings_out_of_range_are_named(tmp_path, line, expected):
    msg = load_error(write_lab(tmp_path / "lab", BASE + f"\n[ratchet]\n{line}\n"))
    assert f"[ratchet] {line.split(' =')[0]}" in msg and expected in msg, msg


def test_ratchet_defaults_screen_then_confirm_twice():
    r = make_config().ratchet
    assert (r.confirm_runs, r.screen_multiplier, r.sigma_multiplier) == (2, 1.0, 2.0)
    assert r.sigma_confidence == 0.8


def test_bad_direction_is_named_with_allowed_values(tmp_path):
    toml = BASE.replace('"maximize"', '"up"')
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "[objective] direction" in msg
    assert "'maximize'" in msg and "'minimize'" in msg
    assert "got 'up'" in msg


def test_wrong_type_is_named(tmp_path):
    msg = load_error(write_lab(tmp_path / "lab", BASE + "[agents]\nworker = 1\n"))
    assert "[agents] worker" in msg
    assert "string" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    toml = BASE.replace('"maximize"', '"up"') + 'comand = "x"\n'
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "2 problem(s)" in msg
    assert "direction" in msg and "comand" in msg


# knob errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "expected"),
    [
        ("low = 0.1\nhigh = 1.0", "needs a `default`"),
        ("low = 1.0\nhigh = 1.0\ndefault = 1.0", "must be below `high`"),
        ("low = 2.0\nhigh = 1.0\ndefault = 1.5", "must be below `high`"),
        ("low = 0.0\nhigh = 1.0\nlog = true\ndefault = 0.5", "`log = true` needs `low` > 0"),
        ("low = 0.0\nhigh = 1.0\ndefault = 2.0", "default: 2.0 outside [0, 1]"),
        ("choices = [1, 2]\nlow = 0\ndefault = 1", "either `choices` or `low`/`high`"),
        ("choices = []\ndefault = 1", "`choices` is empty"),
        ("choices = ['a', 'b']\ndefault = 'c'", "'c' is not one of"),
        ("low = 0.1\ndefault = 0.5", "needs `low` and `high`"),
        ('low = 1\nhigh = 3\ntype = "categorical"\ndefault = 1', "needs `choices`"),
        ('low = 1\nhigh = 8\ntype = "int"\ndefault = 2.5', "not an integer"),
    ],
)
def test_knob_errors_name_the_knob_and_the_problem(tmp_path, knob, expected):
    lab = write_lab(tmp_path / "lab", BASE + f"[search.lr]\n{knob}\n")
    msg = load_error(lab)
    assert "[search.lr]" in msg
    assert expected in msg


def test_with_hydra_params_a_knob_may_leave_its_default_to_the_projects_config(tmp_path):
    knobs = '[search."optim.lr"]\nlow = 0.001\nhigh = 1.0\nlog = true\n'
    knobs += '[search."model.name"]\nchoices = ["cnn", "mlp"]\n'
    cfg = load_config(write_lab(tmp_path / "lab", with_trial_key('params = "hydra"') + knobs))
    assert cfg.unset_defaults() == ["optim.lr", "model.name"]
    filled = cfg.with_defaults({"optim.lr": 0.01, "model.name": "mlp"})
    assert filled.defaults() == {"optim.lr": 0.01, "model.name": "mlp"}
    assert cfg.defaults() == {"optim.lr": None, "model.name": None}  # a copy: cfg unchanged
    # the clamps are still checked without a default
    bad = knobs.replace("low = 0.001", "low = 0.0")
    msg = load_error(write_lab(tmp_path / "bad", with_trial_key('params = "hydra"') + bad))
    assert "`log = true` needs `low` > 0" in msg


def test_a_spec_field_always_needs_its_default(tmp_path):
    toml = with_trial_key('spec = "spec.json"') + "[spec.lr]\nlow = 0.1\nhigh = 1.0\n"
    assert "[spec.lr] needs a `default`" in load_error(write_lab(tmp_path / "lab", toml))


# TOML and file errors ------------------------------------------------------------------------


def test_bad_toml_syntax_names_the_file(tmp_path):
    lab = write_lab(tmp_path / "lab", BASE + "[search.lr\nlow = 1\n")
    msg = load_error(lab)
    assert str(lab / "nightlab.toml") in msg
    assert "not valid TOML" in msg
    assert "line" in msg


def test_missing_config_names_folder_and_init(tmp_path):
    lab = tmp_path / "empty"
    lab.mkdir()
    msg = load_error(lab)
    assert str(lab.resolve()) in msg
    assert "nightlab init" in msg


def test_missing_brief_is_named(tmp_path):
    toml = BASE.replace('name = "t"', 'name = "t"\nbrief = "NOTES.md"')
    msg = load_error(write_lab(tmp_path / "lab", toml))
    assert "[lab] brief" in msg
    assert "NOTES.md" in msg
    assert "does not exist" in msg


def test_missing_editable_file_is_named(tmp_path):
    msg = load_error(write_lab(tmp_path / "lab", with_trial_key('editable = ["model.py"]')))
    assert "[trial] editable" in msg
    assert "'model.py'" in msg
    assert "does not exist" in msg


def test_editable_files_that_exist_and_globs_load(tmp_path):
    toml = with_trial_key('editable = ["train.py", "models/*.py"]')
    cfg = load_config(write_lab(tmp_path / "lab", toml, files=("IDEA.md", "train.py")))
    assert cfg.trial.editable == ["train.py", "models/*.py"]


@pytest.mark.parametrize("entry", ["../train.py", "sub/../../train.py", "/etc/passwd"])
def test_editable_path_leaving_the_lab_is_refused(tmp_path, entry):
    (tmp_path / "train.py").write_text("x\n")
    msg = load_error(write_lab(tmp_path / "lab", with_trial_key(f'editable = ["{entry}"]')))
    assert "leaves the lab" in msg
    assert entry in msg


def test_missing_share_entry_is_named(tmp_path):
    msg = load_error(write_lab(tmp_path / "lab", with_trial_key('share = ["data"]')))
    assert "[trial] share" in msg and "'data'" in msg


# knob semantics ------------------------------------------------------------------------------


def test_float_knob_violations():
    knob = Knob(low=0.0, high=1.0, default=0.5)
    assert knob.kind == "float"
    assert knob.violation(0.0) is None
    assert knob.violation(1.0) is None
    assert knob.violation(0.25) is None
    assert knob.violation(1) is None
    assert "outside" in knob.violation(1.5)
    assert "outside" in knob.violation(-0.01)
    assert knob.violation(math.nan) is not None
    assert knob.violation(math.inf) is not None
    assert "not a number" in knob.violation("0.5")
    assert "not a number" in knob.violation(True)
    assert "not a number" in knob.violation(None)


def test_int_knob_violations():
    knob = Knob(low=4, high=20, type="int", default=10)
    assert knob.kind == "int"
    assert knob.violation(4) is None
    assert knob.violation(20) is None
    assert knob.violation(10.0) is None  # a whole float is an integer value
    assert "not an integer" in knob.violation(10.5)
    assert "outside" in knob.violation(21)
    assert "outside" in knob.violation(3)


def test_categorical_knob_violations():
    knob = Knob(choices=["adam", "sgd"], default="adam")
    assert knob.kind == "categorical"
    assert knob.violation("sgd") is None
    assert "not in" in knob.violation("rmsprop")
    assert knob.violation(None) is not None


def test_explicit_float_type_wins_over_integer_bounds():
    assert Knob(low=1, high=10, type="float", default=2).kind == "float"


def test_integer_bounds_infer_an_int_knob(tmp_path):
    assert Knob(low=4, high=20, default=10).kind == "int"
    toml = BASE + "[search.epochs]\nlow = 4\nhigh = 20\ndefault = 10\n"
    cfg = load_config(write_lab(tmp_path / "lab", toml))
    assert cfg.search["epochs"].kind == "int"
    assert cfg.param_violations({"epochs": 10.5}) == ["epochs: 10.5 is not an integer"]


def test_float_bounds_infer_a_float_knob():
    assert Knob(low=4.0, high=20.0, default=10).kind == "float"
    assert Knob(low=0, high=0.5, default=0.1).kind == "float"


def test_param_violations_lists_each_bad_param():
    cfg = make_config(
        "val_acc",
        search={
            "lr": {"low": 1e-4, "high": 0.1, "log": True, "default": 0.01},
            "epochs": {"low": 1, "high": 10, "type": "int", "default": 5},
            "opt": {"choices": ["adam", "sgd"], "default": "adam"},
        },
    )
    assert cfg.param_violations({"lr": 0.05, "epochs": 3, "opt": "sgd"}) == []
    assert cfg.param_violations({}) == []
    problems = cfg.param_violations({"lr": 0.5, "epochs": 2.5, "opt": "rmsprop", "bs": 32})
    assert len(problems) == 4
    assert problems[0].startswith("lr: ") and "outside" in problems[0]
    assert problems[1].startswith("epochs: ") and "not an integer" in problems[1]
    assert problems[2].startswith("opt: ") and "not in" in problems[2]
    assert "unknown parameter 'bs'" in problems[3]
    assert "[search.bs]" in problems[3]


def test_defaults_collects_every_knob_default():
    cfg = make_config(
        "val_acc",
        search={
            "lr": {"low": 0.0, "high": 1.0, "default": 0.5},
            "opt": {"choices": ["adam", "sgd"], "default": "sgd"},
        },
    )
    assert cfg.defaults() == {"lr": 0.5, "opt": "sgd"}


def test_config_is_frozen():
    cfg = make_config("val_acc")
    with pytest.raises(ValidationError):
        cfg.lab.name = "other"


# sections that go together -------------------------------------------------------------------

SPEC = 'spec = "spec.json"\n\n[spec.lr]\nlow = 0.0\nhigh = 1.0\ndefault = 0.1\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('spec = "spec.json"\n', "go together"),
        ("\n[spec.lr]\nlow = 0.0\nhigh = 1.0\ndefault = 0.5\n", "go together"),
        (
            SPEC + '\n[spec."lr.x"]\nlow = 0\nhigh = 1\ndefault = 0\n',
            "both a field and a group",
        ),
        ('generated = ["generated/*.py"]\n', "[smoke] input_shape"),
    ],
)
def test_spec_and_generated_errors_name_the_fix(make_lab, extra, message):
    lab = make_lab(trial_extra=extra)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(lab)


def test_trial_run_needs_tracking(make_lab):
    lab = make_lab(tracking=False)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + "trial_run = true\n")
    with pytest.raises(ConfigError, match="trial_run"):
        load_config(lab)


# [notify] -------------------------------------------------------------------------------
def test_notify_defaults_to_no_url_and_every_event():
    cfg = make_config()
    assert cfg.notify.urls == [] and cfg.notify.min_interval_s == 60
    assert cfg.notify.events == [
        "started", "baseline_failed", "kept", "stalled", "crashed", "budget", "finished"
    ]  # fmt: skip


def test_an_unknown_notify_event_is_refused_naming_the_known_ones(tmp_path):
    lab = write_lab(tmp_path / "lab", BASE + '[notify]\nevents = ["kept", "finnished"]\n')
    message = load_error(lab)
    assert "[notify] events" in message and "'finnished'" in message
    assert "started, baseline_failed, kept, stalled, crashed, budget, finished" in message


def test_a_notify_url_without_a_service_is_refused_without_echoing_it(tmp_path):
    token = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"  # a webhook's secret part, pasted bare
    lab = write_lab(tmp_path / "lab", BASE + f'[notify]\nurls = ["ntfy://ntfy.sh/t", "{token}"]\n')
    message = load_error(lab)
    assert "[notify] urls" in message and "no Apprise URL" in message and "ntfy://" in message
    assert "XXXXXXXXXXXXXXXXXXXX" not in message  # the value may be a token: not echoed whole


@pytest.mark.parametrize("value", ["-1", "86401", '"soon"'])
def test_a_bad_min_interval_is_refused(tmp_path, value):
    lab = write_lab(tmp_path / "lab", BASE + f"[notify]\nmin_interval_s = {value}\n")
    assert "[notify] min_interval_s" in load_error(lab)


def with_test_paths(paths: str, trial: str = "") -> str:
    objective = f'direction = "maximize"\ntest_paths = {paths}\n'
    return BASE.replace('direction = "maximize"\n', objective) + trial


@pytest.mark.parametrize("entry", ["../test.csv", "data/../../x", "", "  "])
def test_a_test_path_through_dotdot_or_empty_is_refused(tmp_path, entry):
    msg = load_error(write_lab(tmp_path / "lab", with_test_paths(f'["{entry}"]')))
    assert "test_paths" in msg and "no plain path" in msg


def test_an_absolute_test_path_outside_the_lab_loads_and_one_inside_is_refused(tmp_path):
    outside = tmp_path / "held-out"
    cfg = load_config(write_lab(tmp_path / "lab", with_test_paths(f'["{outside}"]')))
    assert cfg.objective.test_paths == [str(outside)]
    inside = tmp_path / "lab" / "data" / "test"
    msg = load_error(write_lab(tmp_path / "lab", with_test_paths(f'["{inside}"]')))
    assert "is inside the lab" in msg


@pytest.mark.parametrize(("editable", "hit"), [
    ('["data/test.csv"]', "data/test.csv"),
    ('["data/**"]', "data/test"),
    ('["**/*.csv"]', "data/test/labels.csv"),
])  # fmt: skip
def test_a_test_path_an_agent_may_edit_or_read_is_refused(tmp_path, editable, hit):
    """An editable glob reaching the test data: an LLM's read_file/grep would read the
    labels, and an edit could rewrite the ones the final test run uses."""
    files = ("IDEA.md", "data/test/labels.csv", "data/test.csv", "data/train.csv")
    toml = with_test_paths('["data/test", "data/test.csv"]', f"editable = {editable}\n")
    msg = load_error(write_lab(tmp_path / "lab", toml, files=files))
    assert "is editable" in msg and repr(hit) in msg and "narrow those globs" in msg
    ok = with_test_paths('["data/test"]', 'editable = ["data/train.csv"]\n')
    assert load_config(write_lab(tmp_path / "lab2", ok, files=files)).objective.test_paths
