"""Attacks on `nightlab adopt` carrying defaults into the user's files: an error part-way
leaves the working tree as it was, never half-written."""

from __future__ import annotations

import errno

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
