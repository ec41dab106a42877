"""Protected files: an edit of one is refused with `harness_changed`; in the sandbox a trial
cannot change one (a read-only bind: its write fails); unsandboxed, a trial that changes one
fails with `harness_changed`, and the next trial gets the original."""

from __future__ import annotations

import json

import pytest

from nightlab import Lab

from conftest import git, rows

TRAIN = """
import json, os
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
exec(open("evaluate.py").read())
if p.get("tamper"):
    open("evaluate.py", "w").write("def score(x):\\n    return 100.0\\n")
print(f"score={score(p.get('boost', 0.0))}")
"""


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_protected_files_are_neither_edited_nor_changed_by_trials(make_lab, sandbox):
    decisions = [
        {"action": "run", "rationale": "make the metric generous to win",
         "edits": [{"file": "evaluate.py", "search": "1.0 + x", "replace": "10.0 + x"}]},
        {"action": "run", "rationale": "a trial that rewrites its own judge",
         "params": {"boost": 0.1, "tamper": True}},
        {"action": "run", "rationale": "an honest probe after the tampering one",
         "params": {"boost": 0.2, "tamper": False}},
    ]  # fmt: skip
    lab = make_lab(decisions=decisions, max_trials=5)
    (lab / "train.py").write_text(TRAIN)
    (lab / "evaluate.py").write_text("def score(x):\n    return 1.0 + x\n")
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace(
            'editable = ["train.py"]',
            'editable = ["train.py", "evaluate.py"]\nprotected = ["evaluate.py"]\n'
            f'sandbox = "{sandbox}"',
        )
        + "\n[search.tamper]\nchoices = [false, true]\ndefault = false\n"
    )
    git(lab, "add", "-A")
    Lab(lab).run(report=lambda line: None)

    (rejected,) = rows(lab, "SELECT reasons FROM decisions WHERE accepted = 0")
    trials = rows(
        lab, "SELECT status, reason, objective FROM trials WHERE kind = 'trial' ORDER BY id"
    )
    assert json.loads(rejected[0]) == [
        "harness_changed: evaluate.py is protected ([trial] protected)"
    ]
    (status, reason, objective), honest = trials
    assert status == "failed" and objective is None
    if sandbox == "bwrap":  # its write was refused
        (tail,) = rows(lab, "SELECT log_tail FROM trials WHERE kind = 'trial' AND status = "
                            "'failed'")[0]  # fmt: skip
        assert reason == "exit status 1" and "Read-only file system" in tail
    else:
        assert reason.startswith("harness_changed: the trial changed evaluate.py")
    assert honest == ("succeeded", None, 1.2)  # the judge was restored before it ran
