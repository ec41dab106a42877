"""Hostile and malformed decisions: the gate never crashes and never lets a bad edit by."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nightlab.agents.decision import Decision
from nightlab.agents.gate import check
from nightlab.config import matches

from conftest import make_config

CFG = make_config(
    "acc",
    name="fuzz",
    trial={"editable": ["train.py", "gen/*.py"]},
    search={"lr": {"low": 1e-4, "high": 0.3, "log": True, "default": 0.01},
            "width": {"choices": [8, 16, 32], "default": 16},
            "epochs": {"low": 1, "high": 20, "default": 5}},
)  # fmt: skip
FILES = {"train.py": "lr = 0.01\nwidth = 16\nfor epoch in range(5):\n    train()\n",
         "gen/aug.py": "def aug(x):\n    return x\n", "IDEA.md": "secret brief\n"}  # fmt: skip

paths = st.one_of(
    st.sampled_from(
        [
            "train.py",
            "gen/aug.py",
            "gen/new.py",
            "IDEA.md",
            "../train.py",
            "/etc/passwd",
            "./train.py",
            "train.py/",
            "gen//aug.py",
            "",
            " ",
            "gen/../IDEA.md",
            "gen/sub/x.py",
            "C:\\\\train.py",
            "train.py\x00",
        ]
    ),
    st.text(string.printable, max_size=20),
)
snippets = st.one_of(
    st.sampled_from(["lr = 0.01", "width = 16", "    train()", "", "\n", "epoch", "x"]),
    st.text(max_size=30),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.sampled_from([8, 16, 32]),
)
raw = st.fixed_dictionaries(
    {"action": st.sampled_from(["run", "wait", "stop", "analyze", "bogus"]),
     "rationale": st.text(max_size=60)},
    optional={
        "params": st.dictionaries(st.sampled_from(["lr", "width", "epochs", "seed", "x"]),
                                  values, max_size=4),
        "edits": st.lists(st.fixed_dictionaries({"file": paths, "search": snippets,
                                                 "replace": snippets}), max_size=4),
        "dimension": st.sampled_from(["loss", "model_arch", "nonsense"]),
        "surprise": st.integers(),
    },
)  # fmt: skip


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw)
def test_the_gate_never_crashes_and_never_passes_a_bad_edit(body):
    try:
        decision = Decision.model_validate(body)
    except ValidationError:
        return  # malformed output never reaches the gate: pydantic-ai asks again
    result = check(decision, CFG, FILES.get)
    if not result.accepted:
        assert result.reasons and result.files == {}
        return
    assert result.reasons == []
    if decision.action != "run":
        assert result.files == {} and not decision.params and not decision.edits
        return
    assert CFG.param_violations(decision.params) == []
    for path, text in result.files.items():
        assert matches(path, CFG.trial.editable)
        assert path == "train.py" or (path.startswith("gen/") and path.count("/") == 1)
        assert ".." not in path and not path.startswith("/")
        assert isinstance(text, str)
    for edit in decision.edits:  # every edit left its mark, in order
        assert edit.file in result.files
    untouched = {p for p in FILES if p not in result.files}
    assert "IDEA.md" in untouched
