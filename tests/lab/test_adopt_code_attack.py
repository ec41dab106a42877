"""Attacks on adopt's rewrite of the project's defaults: several knobs in one file, values
that must read back exactly."""

from __future__ import annotations

import pytest
import yaml

from nightlab.lab.adopt_code import carry


def one(path: str, data: bytes) -> dict:
    return {path: lambda: data}


@pytest.mark.parametrize(
    ("path", "data", "want"),
    [
        ("conf/config.yaml", b"a: 0.5\nb: 0.1\n", b"a: 1\nb: 0.2\n"),
        ("conf/config.yaml", b"a: 0.5\nb: 0.1\n", b"a: 0.75\nb: 0.2\n"),
        ("conf.py", b"C = make_config(a=0.5, b=0.1)\n", b"C = make_config(a=0.75, b=0.2)\n"),
        ("conf.py", b"C = make_config(a=0.5, b=0.1)\n", b"C = make_config(a=1, b=0.2)\n"),
    ],
)
def test_two_knobs_in_one_file_are_both_rewritten_when_the_first_changes_length(
    path, data, want
):
    # the second knob's span was found in the file as it was; the first edit moved it,
    # so the second was refused ("could not be rewritten safely") though it is one literal
    new_a = 1 if b"a=1" in want or b"a: 1\n" in want else 0.75
    done = carry({"a": new_a, "b": 0.2}, {"a": 0.5, "b": 0.1}, one(path, data), hydra=True)
    assert not done.not_carried
    assert list(done.carried) == ["a", "b"]  # reported in the knobs' order
    assert done.edits[path] == want


def test_a_string_beyond_the_basic_plane_is_written_to_yaml_and_reads_back():
    value = "run \U0001f600 é"  # json's \ud83d\ude00 reads back in YAML as two surrogates
    done = carry({"name": value}, {"name": "abc"}, one("conf/config.yaml", b"name: abc\n"),
                 hydra=True)  # fmt: skip
    assert not done.not_carried
    assert yaml.safe_load(done.edits["conf/config.yaml"]) == {"name": value}


def test_a_lone_surrogate_in_a_yaml_string_is_refused_or_escaped_never_a_crash():
    done = carry({"name": "a\ud800"}, {"name": "abc"}, one("conf/config.yaml", b"name: abc\n"),
                 hydra=True)  # fmt: skip
    if done.edits:
        assert yaml.safe_load(done.edits["conf/config.yaml"]) == {"name": "a\ud800"}
    else:
        assert "name" in done.not_carried
