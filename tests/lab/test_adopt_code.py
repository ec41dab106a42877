"""Adopt's rewrite of the project's own defaults: one literal, in place, or a clear report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nightlab.lab.adopt_code import carry

ZEN = b"""from hydra_zen import builds, make_config

BASE = 0.01
Optim = make_config(lr=0.01, name="adam")  # the optimiser
Model = make_config(width=16, depth=BASE * 2)
"""

YAML = b"""model:
  width: 16  # the network's width
optim:
  lr: 0.01
"""

HOSTILE = "x'\"\\\n__import__('os').system('touch pwned') # \u2028 ${oc.env:HOME} ]}"


def files(**content: bytes) -> dict:
    return {name.replace("__", "/").replace("_py", ".py").replace("_yaml", ".yaml"):
            (lambda c=c: c) for name, c in content.items()}  # fmt: skip


def test_a_hydra_zen_literal_is_replaced_in_place():
    done = carry({"optim.lr": 0.003}, {"optim.lr": 0.01}, files(conf_py=ZEN), hydra=True)
    assert done.carried == {"optim.lr": "conf.py:4"} and not done.not_carried
    assert done.edits["conf.py"] == ZEN.replace(b"lr=0.01", b"lr=0.003")


def test_a_non_literal_default_is_reported_not_rewritten():
    done = carry({"model.depth": 0.5}, {"model.depth": 0.02}, files(conf_py=ZEN), hydra=True)
    assert done.edits == {}
    assert "conf.py:5 (not a literal)" in done.not_carried["model.depth"]
    assert "set model.depth = 0.5 there by hand" in done.not_carried["model.depth"]


def test_two_places_with_the_default_are_not_guessed_between():
    two = ZEN + b"SGD = builds(dict, lr=0.01)\n"
    done = carry({"optim.lr": 0.1}, {"optim.lr": 0.01}, files(conf_py=two), hydra=True)
    assert done.edits == {} and "2 places hold 0.01: conf.py:4, conf.py:6" in done.not_carried[
        "optim.lr"]  # fmt: skip


def test_a_yaml_scalar_is_replaced_and_its_comment_kept():
    done = carry({"model.width": 64}, {"model.width": 16}, files(config_yaml=YAML), hydra=True)
    assert done.edits["config.yaml"] == YAML.replace(b"width: 16", b"width: 64")
    group = b"lr: 0.01\nbetas: [0.9, 0.99]\n"  # a Hydra config group's file: optim/adam.yaml
    done = carry({"optim.lr": 1e-5}, {"optim.lr": 0.01}, files(optim__adam_yaml=group), True)
    assert yaml.safe_load(done.edits["optim/adam.yaml"]) == {"lr": 1e-5, "betas": [0.9, 0.99]}


def test_nightlab_params_literals_are_replaced():
    code = b"import nightlab\np = nightlab.params(lr=0.01, opt='adam')\n"
    done = carry({"lr": -0.5, "opt": "sgd"}, {"lr": 0.01, "opt": "adam"}, files(t_py=code), False)
    assert done.edits["t.py"] == b"import nightlab\np = nightlab.params(lr=-0.5, opt='sgd')\n"
    assert set(done.carried) == {"lr", "opt"}


def test_a_hostile_string_cannot_inject_code(tmp_path: Path):
    code = b"def params(**kw):\n    return kw\n\nprint(repr(params(name='adam')['name']))\n"
    done = carry({"name": HOSTILE}, {"name": "adam"}, files(t_py=code, c_yaml=b"name: adam\n"),
                 hydra=False)  # fmt: skip
    script = tmp_path / "t.py"
    script.write_bytes(done.edits["t.py"])
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert ran.stdout.strip() == repr(HOSTILE)
    assert not (tmp_path / "pwned").exists()
    done = carry({"name": HOSTILE}, {"name": "adam"}, files(c_yaml=b"name: adam\nk: 1\n"), True)
    assert yaml.safe_load(done.edits["c.yaml"]) == {"name": HOSTILE, "k": 1}


@pytest.mark.parametrize(
    "content",
    [
        b"a: &a [1, 1]\nb: &b [*a, *a]\nmodel: {width: *b}\n",  # an alias, not a value
        b"model:\n  width: !!python/object/apply:os.system ['touch pwned']\n",
        b"model:\n  width: |\n    16\n",  # a block scalar
        b"\xff\xfe not text",
    ],
    ids=["alias", "python-tag", "block", "binary"],
)
def test_hostile_yaml_is_never_rewritten(content: bytes):
    done = carry({"model.width": 64}, {"model.width": 16}, files(c_yaml=content), hydra=True)
    assert done.edits == {} and "model.width" in done.not_carried


def test_deep_nesting_is_skipped_not_a_crash():
    deep_py = b"make_config(lr=0.01)\nx = " + b"[" * 200_000 + b"]" * 200_000 + b"\n"
    deep_yaml = b"lr: 0.01\nx: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"
    done = carry({"lr": 0.1}, {"lr": 0.01}, files(c_py=deep_py, c_yaml=deep_yaml), hydra=True)
    assert done.edits == {} and "not found" in done.not_carried["lr"]


def test_a_huge_file_is_not_scanned():
    huge = b"x = 1\n" * 300_000 + b"C = make_config(lr=0.01)\n"
    done = carry({"lr": 0.1}, {"lr": 0.01}, files(c_py=huge), hydra=True)
    assert done.edits == {} and "not found" in done.not_carried["lr"]
