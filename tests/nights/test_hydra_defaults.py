"""`[trial] params = "hydra"` with a knob's `default` left out: the night reads it from the
project's composed config (`python train.py --cfg job --resolve`, a real Hydra app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.config import ConfigError
from nightlab.trials.composed import ComposedConfigError

from conftest import rows

pytestmark = pytest.mark.slow

APP = """
import hydra

@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    print(f"score={cfg.model.width / 64 + cfg.optim.lr}", flush=True)

main()
"""

CONF = """
model:
  width: 32  # the network's width
optim:
  name: adam
  lr: 0.5
"""

KNOBS = """params = "hydra"

[search."model.width"]
choices = [16, 32, 64]

[search."optim.lr"]
low = 0.0
high = 1.0
default = 0.25
"""


def hydra_lab(make_lab, app: str = APP, conf: str = CONF, knobs: str = KNOBS, **options) -> Path:
    lab = make_lab(trial_extra=knobs, max_trials=1, baseline_repeats=1, **options)
    toml = lab / "nightlab.toml"  # the tiny lab's own `boost` knob is not in this app
    toml.write_text(toml.read_text().replace("[search.boost]\nlow = 0.0\nhigh = 5.0\n"
                                             "default = 0.0\n", ""))  # fmt: skip
    (lab / "train.py").write_text(app)
    (lab / "conf").mkdir()
    (lab / "conf" / "config.yaml").write_text(conf)
    return lab


def night(lab: Path) -> list[str]:
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    return lines


def test_the_baseline_uses_the_configs_value_and_a_differing_default_is_reported(make_lab):
    lab = hydra_lab(make_lab)
    lines = night(lab)
    (trial,) = rows(lab, "SELECT * FROM trials")
    assert trial["status"] == "succeeded"
    params = json.loads(trial["params"])
    assert params == {"model.width": 32, "optim.lr": 0.25}  # the config's; the declared one
    assert trial["objective"] == pytest.approx(0.5 + 0.25)
    said = "\n".join(lines)
    assert "defaults from the project's config: model.width=32" in said
    assert "knob optim.lr: nightlab.toml's default 0.25 differs from the project's config " \
           "(0.5); the baseline uses nightlab.toml's" in said  # fmt: skip
    assert not (lab / "outputs").exists()  # Hydra's --cfg wrote nothing into the lab
    assert Lab(lab).config.search["model.width"].default == 32  # kept for the other commands


def test_a_resumed_night_does_not_read_the_config_again(make_lab):
    lab = hydra_lab(make_lab)
    night(lab)
    (lab / "conf" / "config.yaml").write_text("broken: [")  # a second read would fail
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("max_trials = 1", "max_trials = 2"))
    lines = night(lab)
    assert "knob optim.lr: nightlab.toml's default 0.25 differs" in "\n".join(lines)
    assert [t["status"] for t in rows(lab, "SELECT * FROM trials")] == ["succeeded"] * 2


def test_without_hydra_an_omitted_default_is_a_config_error(make_lab):
    lab = hydra_lab(make_lab, knobs=KNOBS.replace('params = "hydra"', ""))
    with pytest.raises(ConfigError, match=r"\[search\.model\.width\] needs a `default`"):
        _ = Lab(lab).config


@pytest.mark.parametrize(
    ("app", "conf", "expected"),
    [
        # the knob's path is not in the config: the nearby keys are named
        (APP, CONF.replace("width", "depth"), r"'model.width' is not in .*keys at model: depth"),
        # a config value outside the knob's clamp
        (APP, CONF.replace("32", "48"), r"'model.width'.* gives 48, which does not fit"),
        # not a Hydra app: it ignores --cfg and trains; it would run for the trial's budget
        ("import time\ntime.sleep(60)\n", CONF, r"still running after 2 s"),
        # megabytes of output
        ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", CONF, r"more than 4 MiB"),
        # a YAML bomb of aliases, and a Python object tag: data only, never built
        ("print('a: &a [1,1,1]\\nb: &b [*a,*a,*a]\\nmodel: {width: [*b,*b,*b]}')\n", CONF,
         r"'model.width' is a list"),
        ("print('model: !!python/object/apply:os.system [\"touch pwned\"]')\n", CONF,
         r"printed no YAML config"),
        # a crash before Hydra: stderr's tail is shown
        ("raise SystemExit('no data folder: run make data')\n", CONF, r"no data folder"),
    ],
    ids=["missing-key", "out-of-range", "hangs", "floods", "alias-bomb", "python-tag", "crash"],
)
def test_a_config_that_cannot_be_read_stops_the_night_before_any_trial(
    make_lab, app, conf, expected
):
    lab = hydra_lab(make_lab, app=app, conf=conf, budget=2)
    with pytest.raises(ComposedConfigError, match=expected) as caught:
        night(lab)
    assert "model.width" in str(caught.value)
    assert not (lab / "pwned").exists()
    assert rows(lab, "SELECT * FROM trials") == []


def test_with_every_default_declared_an_unreadable_config_is_only_a_note(make_lab):
    knobs = KNOBS.replace("choices = [16, 32, 64]\n", "choices = [16, 32, 64]\ndefault = 16\n")
    knobs += '\n[search."+extra"]\nlow = 0\nhigh = 9\ndefault = 1\n'  # added by the override
    lab = hydra_lab(make_lab, knobs=knobs)
    lines = night(lab)
    assert any("note: knob '+extra' is not in the project's composed config" in line
               for line in lines)  # fmt: skip
    (trial,) = rows(lab, "SELECT * FROM trials")
    assert trial["status"] == "succeeded"
    assert json.loads(trial["params"]) == {"model.width": 16, "optim.lr": 0.25, "+extra": 1}
