"""Attacks on `nightlab adopt` carrying defaults into the user's files: an error part-way
leaves the working tree as it was, never half-written."""

from __future__ import annotations

import errno
import json

import pytest

from nightlab import Lab
from nightlab.lab import adopt as adopt_module
from nightlab.lab.errors import LabError

from conftest import git

pytestmark = pytest.mark.slow


def test_adopt_that_cannot_write_nightlab_toml_leaves_the_code_it_rewrote_as_it_was(
    make_lab, monkeypatch
):
    from test_adopt_defaults import PARAMS_APP, adopted_night

    knobs_toml = "\n[search.lr]\nlow = 0.0\nhigh = 2.0\ndefault = 1.0\n"
    lab = adopted_night(make_lab, PARAMS_APP, {"params": {"boost": 1.5, "lr": 0.25}},
                        toml_extra=knobs_toml)  # fmt: skip
    code, toml = (lab / "train.py").read_bytes(), (lab / "nightlab.toml").read_bytes()

    def full_disk(*args, **kwargs):  # train.py is rewritten by then; nightlab.toml fails
        raise OSError(errno.ENOSPC, "No space left on device", str(lab / "nightlab.toml"))

    monkeypatch.setattr(adopt_module, "_set_defaults", full_disk)
    with pytest.raises(LabError, match="nothing was changed") as caught:
        Lab(lab).adopt(2)
    assert "No space left on device" in str(caught.value)
    assert (lab / "train.py").read_bytes() == code  # not left with boost=1.5, uncommitted
    assert (lab / "nightlab.toml").read_bytes() == toml
    assert git(lab, "status", "--porcelain") == ""


def test_a_resumed_night_rereads_the_config_of_its_own_code_not_the_users_edits(make_lab):
    # the knobs change mid-night, so the composed config is read again: from the code the
    # night runs (its snapshot), not from the lab folder the user has edited since
    from test_hydra_defaults import hydra_lab, night

    from conftest import rows

    lab = hydra_lab(make_lab)
    night(lab)
    conf = lab / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("width: 32", "width: 16"))  # not this night's
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("max_trials = 1", "max_trials = 2")
                    + '\n[search."optim.name"]\nchoices = ["adam", "sgd"]\n')  # fmt: skip
    lines = night(lab)
    (kept,) = rows(lab, "SELECT value FROM meta WHERE key = 'composed_config'")
    values = json.loads(kept["value"])["values"]
    assert values["model.width"] == 32 and values["optim.name"] == "adam"
    assert "model.width=32" in "\n".join(lines)
    assert Lab(lab).config.search["model.width"].default == 32


def test_adopt_interrupted_part_way_leaves_the_tree_as_it_was(make_lab, monkeypatch):
    from test_adopt_defaults import PARAMS_APP, adopted_night

    knobs_toml = "\n[search.lr]\nlow = 0.0\nhigh = 2.0\ndefault = 1.0\n"
    lab = adopted_night(make_lab, PARAMS_APP, {"params": {"boost": 1.5, "lr": 0.25}},
                        toml_extra=knobs_toml)  # fmt: skip
    code = (lab / "train.py").read_bytes()

    def interrupted(*args, **kwargs):  # a Ctrl-C (or a bug) after train.py was rewritten
        raise KeyboardInterrupt

    monkeypatch.setattr(adopt_module, "_set_defaults", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Lab(lab).adopt(2)
    assert (lab / "train.py").read_bytes() == code
    assert git(lab, "status", "--porcelain") == ""


def test_a_night_that_failed_before_it_began_reads_the_config_again(make_lab, monkeypatch):
    # the composed config was kept, then the night failed before its snapshot (here: an
    # untracked file too big to snapshot); the user fixes that and edits the config: the
    # night that begins must read the code it snapshots, not the kept values of before
    from test_hydra_defaults import hydra_lab, night

    from nightlab.trials.workspace import Workspace, WorkspaceError

    from conftest import rows

    lab = hydra_lab(make_lab)

    def refused(self):
        raise WorkspaceError("big.bin (900 MB) is untracked and not ignored")

    with monkeypatch.context() as m:
        m.setattr(Workspace, "snapshot", refused)
        with pytest.raises(Exception, match="untracked"):
            night(lab)
    conf = lab / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("width: 32", "width: 16"))
    lines = night(lab)
    (trial,) = rows(lab, "SELECT * FROM trials")
    assert json.loads(trial["params"])["model.width"] == 16
    assert "defaults from the project's config: model.width=16" in "\n".join(lines)
