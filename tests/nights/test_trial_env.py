"""What a trial finds in a night: its script's mode bits kept, its outputs kept, the
shared data linked in and fingerprinted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import rows


@pytest.mark.slow
def test_an_edited_script_stays_executable_and_outputs_are_kept(make_lab):
    edit = {"file": "run.sh", "search": "BOOST=0", "replace": "BOOST=1"}
    lab = make_lab(
        decisions=[{"action": "run", "rationale": "edit the executable script", "edits": [edit]}],
        max_trials=4,
    )
    script = lab / "run.sh"
    script.write_text(
        "#!/bin/sh\nBOOST=0\necho note > out.txt\nmkdir -p logs\n"
        "echo x > logs/a.log\necho score=$((1 + BOOST))\n"
    )
    script.chmod(0o755)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace('command = "python train.py"', 'command = "./run.sh"')
        .replace('editable = ["train.py"]', 'editable = ["run.sh"]')
    )
    final = Lab(lab).run(report=lambda line: None)
    assert final["trials"]["succeeded"] == 4
    (edited,) = rows(lab, "SELECT id, objective FROM trials WHERE kind='trial'")
    assert edited[1] == 2.0
    for trial in range(1, 5):
        outputs = Path(lab / ".nightlab" / "trials" / str(trial) / "outputs")
        assert (outputs / "out.txt").read_text() == "note\n"
        assert (outputs / "logs" / "a.log").is_file()


@pytest.mark.slow
def test_shared_data_reaches_the_trial_and_is_fingerprinted(make_lab):
    lab = make_lab(max_trials=3, trial_extra='share = ["data"]')
    (lab / ".gitignore").write_text("data/\n")
    (lab / "data").mkdir()
    (lab / "data" / "value.txt").write_text("2.5\n")
    (lab / "train.py").write_text("print('score=' + open('data/value.txt').read().strip())\n")
    final = Lab(lab).run(report=lambda line: None)
    assert final["trials"]["succeeded"] == 3 and final["best"]["objective"] == 2.5
    env = json.loads((lab / ".nightlab" / "trials" / "1" / "env.json").read_text())
    first = env["data"]["data"]
    assert first.startswith("sha256:") and "(1 files)" in first
    (lab / "data" / "value.txt").write_text("3.5\n")
    Lab(lab).run(max_trials=4, report=lambda line: None)
    env = json.loads((lab / ".nightlab" / "trials" / "4" / "env.json").read_text())
    assert env["data"]["data"] != first
