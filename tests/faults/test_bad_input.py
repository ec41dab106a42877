"""Bad input never crashes nightlab: fuzzed nightlab.toml files (random text and
structurally valid files with wrong values), fuzzed metric lines printed or logged by a
trial, fuzzed replay files. Each is either accepted or refused with its own error and a
message (ConfigError, AgentError); the CLI answers exit 2 without a traceback and writes
nothing. tests/agents/test_gate_fuzz.py fuzzes the decisions themselves (the gate).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from nightlab.agents import AgentError, make_worker
from nightlab.agents.decision import Decision
from nightlab.config import Config, ConfigError, load_config
from nightlab.trials.metrics import MetricReader, parse_line

from conftest import NIGHTLAB, git, lab_toml

BASE = tomllib.loads(
    lab_toml(
        knobs="[search.width]\nchoices = [8, 16]\ndefault = 8\n"
        "[search.epochs]\nlow = 1\nhigh = 9\ndefault = 3\n",
    )
)
SECTIONS = {name: list(field.annotation.model_fields) for name, field in Config.model_fields.items()
            if hasattr(field.annotation, "model_fields")}  # fmt: skip
SECTIONS["search"] = ["boost", "width", "epochs", "new"]
KNOB_KEYS = ["low", "high", "log", "type", "choices", "default"]
FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HUGE = 10**400  # TOML and JSON readers take it; float() of it overflows

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "maximize", "minimize", "last", "best", "json", "hydra", "bwrap", "none",
                     "search", "replay:x.jsonl", "IDEA.md", "train.py", "python train.py"]),
    st.dates(),
)  # fmt: skip
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def wrong_configs(draw) -> dict:
    """The valid base config with 1–4 keys set to wrong values, removed or invented."""
    raw = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*SECTIONS, "extra", "search"]))
        op = draw(st.sampled_from(["set", "set", "set", "del", "section"]))
        if op == "section":
            raw[section] = draw(toml_values)
            continue
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        keys = SECTIONS.get(section, []) + [draw(st.text(min_size=1, max_size=8))]
        key = draw(st.sampled_from(keys))
        if section == "search":  # a knob: one of its keys, or the knob itself
            knob = table.setdefault(key, {"low": 0, "high": 1, "default": 0})
            if isinstance(knob, dict) and draw(st.booleans()):
                sub = draw(st.sampled_from(KNOB_KEYS))
                if op == "del":
                    knob.pop(sub, None)
                else:
                    knob[sub] = draw(toml_values)
                continue
        if op == "del":
            table.pop(key, None)
        else:
            table[key] = draw(toml_values)
    return raw


def dumps(raw: dict) -> str:
    try:
        return tomlkit.dumps(raw)
    except Exception:  # tomlkit cannot write every shape; those are not our subject
        assume(False)
        raise


def toml_ish_lines() -> st.SearchStrategy[str]:
    keys = st.sampled_from(
        ["name", "metric", "direction", "command", "budget_seconds", "low", "high", "default",
         "choices", "worker", "max_trials", "editable", "x", "a.b", '"q"']
    )  # fmt: skip
    raw = st.sampled_from(
        ['"x"', "1", "-1", "1e400", "nan", "inf", "true", "[1, 2]", "[", '"', "{a = 1}", "{",
         "1979-05-27", '"maximize"', "0x10", "1_000", "''", "[[]]", '"""', "[1,]"]
    )  # fmt: skip
    headers = st.sampled_from(
        ["[lab]", "[objective]", "[trial]", "[search.x]", "[budget]", "[agents]", "[[lab]]",
         "[search]", "[lab", "[]", "[search.x.y]", "[executor]", "[report]", "[tracking]"]
    )  # fmt: skip
    line = st.one_of(
        headers, st.builds(lambda k, v: f"{k} = {v}", keys, raw | st.text(max_size=6)), st.text()
    )
    return st.lists(line, max_size=14).map("\n".join)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    lab = tmp_path_factory.mktemp("fuzz") / "lab"
    lab.mkdir()
    (lab / "IDEA.md").write_text("Maximise score.\n")
    (lab / "train.py").write_text("print('score=1')\n")
    return lab


def load(lab: Path, text: str | bytes) -> Config | ConfigError:
    path = lab / "nightlab.toml"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    try:
        return load_config(lab)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError without a message"
        return exc


# ------------------------------------------------------------------------- nightlab.toml
@FAST
@given(text=st.one_of(st.text(), toml_ish_lines(), st.binary(max_size=64)))
@example(text=lab_toml(tracking=True))
def test_fuzzed_toml_text_is_a_config_or_a_config_error(lab_dir, text):
    out = load(lab_dir, text)
    event(type(out).__name__)
    assert isinstance(out, Config | ConfigError)


@FAST
@given(raw=wrong_configs())
def test_wrong_values_are_a_config_or_a_config_error(lab_dir, raw):
    out = load(lab_dir, dumps(raw))
    event(type(out).__name__)
    assert isinstance(out, Config | ConfigError)
    if isinstance(out, ConfigError):
        assert "nightlab.toml" in str(out)  # it names the file


@pytest.mark.parametrize(
    "knob",
    [{"low": 0, "high": 10, "default": HUGE}, {"low": 0, "high": HUGE, "default": -1}],
    ids=["default", "high"],
)
def test_a_huge_integer_in_a_knob_is_a_config_error(lab_dir, knob):
    raw = copy.deepcopy(BASE)
    raw["search"]["boost"] = knob
    assert isinstance(load(lab_dir, tomlkit.dumps(raw)), ConfigError)


_labs = itertools.count()


def cli_lab(root: Path, text: str) -> Path:
    lab = root / f"lab{next(_labs)}"
    lab.mkdir()
    (lab / "IDEA.md").write_text("Maximise score.\n")
    (lab / "train.py").write_text("print('score=1')\n")
    (lab / "nightlab.toml").write_text(text)
    git(lab, "init", "-q")
    return lab


def nightlab(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    return subprocess.run([*NIGHTLAB, *args], capture_output=True, text=True, timeout=60, env=env)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=wrong_configs())
def test_the_cli_refuses_a_wrong_config_in_one_line_and_writes_nothing(tmp_path_factory, raw):
    text = dumps(raw)
    scratch = tmp_path_factory.mktemp("cli")
    lab = cli_lab(scratch, text)
    assume(isinstance(load(lab, text), ConfigError))  # a valid one would start a night
    ran = nightlab("run", str(lab), "--max-trials", "1")
    assert ran.returncode == 2, (text, ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr and ran.stderr.startswith("error:"), ran.stderr
    looked = nightlab("status", str(lab))
    assert "Traceback" not in looked.stderr, looked.stderr
    assert looked.returncode in (0, 2)  # status reads only [lab] name: it may answer
    assert not (lab / ".nightlab" / "state.db").exists()
    assert not (lab / ".nightlab").exists() or not any((lab / ".nightlab").iterdir())


def test_the_cli_refuses_a_huge_integer_in_one_line(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["search"]["boost"] = {"low": 0, "high": 10, "default": HUGE}
    lab = cli_lab(tmp_path, tomlkit.dumps(raw))
    ran = nightlab("run", str(lab), "--max-trials", "1")
    assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran.stderr[-2000:]


# ------------------------------------------------------------------------------ metrics
metric_like = st.from_regex(
    r"\A[A-Za-z_][\w.\-/]{0,8} ?[=:] ?[-+]?"
    r"(nan|inf|infinity|\d{1,400}(\.\d*)?([eE][-+]?\d{1,4})?|\.\d+)\Z"
)
printed = st.lists(st.one_of(metric_like, st.text(max_size=12)), max_size=6).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.text(), printed))
@example(line="score=" + "9" * 5000)
@example(line="step=1e999 score=nan x=-inf y=.5e-400")
def test_a_printed_line_is_parsed_or_ignored(line):
    values = parse_line(line)
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in values.items())


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
logged = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"metrics": st.dictionaries(st.sampled_from(["score", "loss", "x"]) | st.text(max_size=4),
                                    json_values, max_size=3)},
        optional={"step": json_values, "source": st.sampled_from(["stdout", "log"]) | json_values,
                  "ts": json_values},
    ).map(json.dumps),
    st.text(max_size=30),
)  # fmt: skip


@FAST
@given(
    chunks=st.lists(st.one_of(printed.map(str.encode), st.binary(max_size=40)), max_size=6),
    lines=st.lists(logged, max_size=6),
)
def test_what_a_trial_prints_or_logs_never_crashes_the_reader(tmp_path_factory, chunks, lines):
    folder = tmp_path_factory.mktemp("trial")
    reader = MetricReader(folder, "score")
    out = folder / "stdout.log"
    for chunk in chunks:  # the trial writes in pieces; nightlab reads as it goes
        with out.open("ab") as fh:
            fh.write(chunk)
        reader.read()
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    reader.read(final=True)
    for point in reader.history:
        assert isinstance(point["value"], float) and isinstance(point["step"], int)
    best = reader.reduce("best", maximize=True)
    assert best is None or math.isfinite(best)
    assert reader.diverged() is None or not math.isfinite(reader.diverged())


@pytest.mark.parametrize(
    "record",
    [{"step": HUGE, "metrics": {"score": 1}}, {"metrics": {"score": HUGE}}],
    ids=["step", "value"],
)
def test_a_huge_integer_in_a_logged_line_is_ignored(tmp_path, record):
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    MetricReader(tmp_path, "score").read(final=True)


# ---------------------------------------------------------------------- replay decisions
decision_dicts = st.fixed_dictionaries(
    {"action": st.sampled_from(["run", "wait", "stop", "analyze", "fly"]) | json_values},
    optional={
        "rationale": st.text(max_size=30) | json_values,
        "params": st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values,
        "edits": st.lists(st.fixed_dictionaries({"file": st.text(max_size=8),
                                                 "search": st.text(max_size=8),
                                                 "replace": st.text(max_size=8)}), max_size=2)
        | json_values,
        "todo_new": st.lists(st.text(max_size=8), max_size=4),
        "dimension": st.sampled_from(["loss", "model_arch", "nope"]),
        "unexpected": json_values,
    },
)  # fmt: skip
valid_dicts = st.fixed_dictionaries(
    {"action": st.sampled_from(["run", "wait", "stop", "analyze", "research", "report"]),
     "rationale": st.text(max_size=30)},
    optional={"params": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
              "todo_new": st.lists(st.text(max_size=8), max_size=2),
              "notes_update": st.text(max_size=10) | st.none()},
)  # fmt: skip
decision_lines = st.one_of(
    valid_dicts.map(json.dumps),
    valid_dicts.map(json.dumps),
    valid_dicts.map(json.dumps),
    decision_dicts.map(json.dumps),
    json_values.map(json.dumps),
    st.text(),
    st.sampled_from(["", "# a comment", "   "]),
)


@pytest.fixture(scope="module")
def cfg(lab_dir) -> Config:
    (lab_dir / "nightlab.toml").write_text(tomlkit.dumps(BASE))
    return load_config(lab_dir)


@FAST
@given(lines=st.lists(decision_lines, max_size=6))
def test_a_replay_file_is_a_worker_or_an_agent_error(lab_dir, cfg, lines):
    path = lab_dir / "decisions.jsonl"
    path.write_text("\n".join(lines))
    try:
        worker = make_worker("replay:decisions.jsonl", cfg, lab_dir)
    except AgentError as exc:
        event("AgentError")
        assert "decisions.jsonl" in str(exc)
        return
    event(f"a worker with {len(worker.decisions)} decision(s)")
    decided = [worker.decide({}) for _ in range(len(lines) + 1)]
    assert all(isinstance(d, Decision) for d in decided)
    assert decided[-1].action == "stop"


@pytest.mark.parametrize(
    "content",
    [b'{"action": "run", "rationale": "caf\xe9 au lait is a fine reason"}\n', b"[" * 100_000],
    ids=["latin-1", "deep"],
)
def test_an_unreadable_replay_file_is_an_agent_error(lab_dir, cfg, content):
    (lab_dir / "decisions.jsonl").write_bytes(content)
    with pytest.raises(AgentError):
        make_worker("replay:decisions.jsonl", cfg, lab_dir)
