"""First steps that tripped (issue 19): a crashing baseline ends `nightlab run` non-zero with
the exception and the fix; `nightlab schema` validates real nightlab.toml files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conftest import cli

REPO = Path(__file__).resolve().parents[2]
CRASH_FOR_REAL = "raise ModuleNotFoundError(\"No module named 'lightning'\")\n"


@pytest.mark.parametrize("trials", ["1", "4"])
def test_a_crashing_baseline_exits_3_with_its_stderr_and_the_fix(make_lab, trials):
    lab = make_lab(trial=CRASH_FOR_REAL)
    proc = cli("run", str(lab), "--max-trials", trials, check=False)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "the baseline failed (trial 1" in proc.stderr
    assert "ModuleNotFoundError: No module named 'lightning'" in proc.stderr  # its stderr
    assert "pip install 'nightlab[examples]'" in proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr  # the trial's, shown as its tail
    assert "nightlab/lab/cli.py" not in proc.stderr  # not ours


def test_a_baseline_failure_without_a_known_fix_shows_the_tail_only(make_lab):
    lab = make_lab(trial="import sys\nprint('bad data in row 7', file=sys.stderr)\nsys.exit(4)\n")
    proc = cli("run", str(lab), "--max-trials", "1", check=False)
    assert proc.returncode == 3 and "bad data in row 7" in proc.stderr
    assert "fix:" not in proc.stderr


def test_hint_names_the_extra_or_what_auto_repair_said():
    from nightlab.lab.baseline_failure import hint

    tail = "ModuleNotFoundError: No module named 'sklearn.datasets'"
    assert hint(tail, []) == "No module named sklearn: pip install 'nightlab[examples]'"
    said = [{"ok": False, "message": "no module named 'wandb' and no install configured"}]
    assert hint("No module named 'wandb'", said) == f"auto-repair: {said[0]['message']}"
    assert "pip install wandb" in hint("No module named 'wandb'", [])
    assert hint("ValueError: nope", []) is None


@pytest.fixture(scope="module")
def schema() -> dict:
    printed = json.loads(cli("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(printed)
    return printed


def _tomls() -> list[Path]:
    found = sorted(REPO.glob("examples/*/nightlab.toml"))
    found += sorted(REPO.glob("src/nightlab/lab/templates/*/nightlab.toml"))
    assert len(found) >= 4
    return found


@pytest.mark.parametrize("path", _tomls(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_schema_validates_the_bundled_labs(schema, path):
    jsonschema.validate(tomllib.loads(path.read_text()), schema)


SEARCH = """
[lab]
name = "x"
[objective]
metric = "acc"
direction = "maximize"
[trial]
command = "python train.py"
[search]
sampler = "random"
startup_trials = 3
[search.lr]
type = "float"
low = 0.001
high = 0.1
default = 0.01
"""


def test_search_holds_settings_and_knob_tables_and_typos_are_rejected(schema):
    from nightlab.config import Config

    good = tomllib.loads(SEARCH)
    assert Config.model_validate(good).search_settings.sampler == "random"  # nightlab takes it
    jsonschema.validate(good, schema)
    assert "search_settings" not in schema["properties"]
    assert {"sampler", "startup_trials", "multivariate"} <= set(
        schema["properties"]["search"]["properties"])  # fmt: skip
    for typo in (
        SEARCH.replace("[trial]", "[trail]"),
        SEARCH.replace("command =", "comand ="),
        SEARCH.replace("sampler =", "sampeler ="),
        SEARCH.replace('sampler = "random"', 'sampler = "randm"'),
        SEARCH.replace("low =", "lo ="),
        SEARCH + "\n[search_settings]\nsampler = \"tpe\"\n",
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(tomllib.loads(typo), schema)
