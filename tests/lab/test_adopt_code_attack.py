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


@pytest.mark.parametrize(("written", "read"), [("1e-3", 0.001), ("3E-4", 0.0003), ("1e3", 1000.0)])
def test_a_yaml_float_without_a_dot_is_the_float_hydra_reads(written, read):
    # OmegaConf reads `lr: 1e-3` as 0.001 (plain YAML 1.1: the string '1e-3'); adopt
    # refused the most common way to write a learning rate ("holds '1e-3'")
    data = f"optim:\n  lr: {written}  # the rate\n".encode()
    done = carry({"optim.lr": 0.5}, {"optim.lr": read}, one("conf/config.yaml", data),
                 hydra=True)  # fmt: skip
    assert not done.not_carried
    assert done.edits["conf/config.yaml"] == data.replace(written.encode(), b"0.5")


def test_a_yaml_date_is_the_string_hydra_reads():
    data = b"run:\n  tag: 2024-01-01\n"
    done = carry({"run.tag": "v2"}, {"run.tag": "2024-01-01"}, one("conf/config.yaml", data),
                 hydra=True)  # fmt: skip
    assert done.edits["conf/config.yaml"] == b'run:\n  tag: "v2"\n'


def test_a_bom_before_a_python_file_does_not_move_the_first_lines_span():
    data = b"\xef\xbb\xbfC = make_config(lr=0.01)\n"
    done = carry({"lr": 0.5}, {"lr": 0.01}, one("conf.py", data), hydra=True)
    assert done.edits["conf.py"] == b"\xef\xbb\xbfC = make_config(lr=0.5)\n"
