"""The quality gate: a decision runs whole or not at all, and every refusal says why."""

from __future__ import annotations

import pytest

from nightlab.agents.decision import Decision, Edit
from nightlab.agents.gate import check
from nightlab.config import Config, matches
from nightlab.trials.workspace import Workspace

from conftest import git, make_config

GOOD = "lower lr: the loss curve oscillates after epoch 3"

BASE_FILES = {
    "train.py": "import torch\nlr = 0.1\nepochs = 5\n",
    "models/net.py": "width = 16\n",
}


@pytest.fixture
def cfg() -> Config:
    return make_config(
        "val_acc",
        trial={"editable": ["train.py", "models/*.py"]},
        search={
            "lr": {"low": 1e-4, "high": 1.0, "log": True, "default": 0.1},
            "depth": {"low": 1, "high": 8, "type": "int", "default": 4},
            "opt": {"choices": ["adam", "sgd"], "default": "adam"},
        },
    )


def read(path: str) -> str | None:
    return BASE_FILES.get(path)


def run(**kw) -> Decision:
    return Decision(action="run", rationale=kw.pop("rationale", GOOD), **kw)


# params --------------------------------------------------------------------------------------


def test_run_with_params_in_range_is_accepted(cfg):
    result = check(run(params={"lr": 0.01, "depth": 8, "opt": "sgd"}), cfg, read)
    assert result.accepted
    assert result.reasons == []
    assert result.files == {}


def test_params_outside_the_clamps_are_rejected_with_reasons(cfg):
    result = check(run(params={"lr": 2.0, "depth": 2.5, "opt": "rmsprop"}), cfg, read)
    assert not result.accepted
    assert len(result.reasons) == 3
    assert any(r.startswith("lr:") and "outside" in r for r in result.reasons)
    assert any(r.startswith("depth:") and "not an integer" in r for r in result.reasons)
    assert any(r.startswith("opt:") and "rmsprop" in r for r in result.reasons)


def test_unknown_param_is_rejected(cfg):
    result = check(run(params={"batch_size": 64}), cfg, read)
    assert not result.accepted
    assert result.reasons == [
        "unknown parameter 'batch_size' (declare it under [search.batch_size])"
    ]


# rationale -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rationale", ["", "   ", "try", "n/a", "Because!", "idk", "short one"])
def test_thin_rationale_is_rejected(cfg, rationale):
    result = check(Decision(action="wait", rationale=rationale), cfg, read)
    assert not result.accepted
    assert "rationale too thin" in result.reasons[0]


def test_thin_rationale_rejects_a_run_with_good_params(cfg):
    result = check(run(rationale="try", params={"lr": 0.01}), cfg, read)
    assert not result.accepted


def test_non_run_action_with_a_real_rationale_is_accepted(cfg):
    result = check(Decision(action="stop", rationale="three trials in a row were worse"), cfg, read)
    assert result.accepted and result.files == {}


# edits ---------------------------------------------------------------------------------------


def test_edit_of_an_editable_file_yields_its_new_content(cfg):
    edit = Edit(file="train.py", search="lr = 0.1", replace="lr = 0.05")
    result = check(run(edits=[edit]), cfg, read)
    assert result.accepted
    assert result.files == {"train.py": "import torch\nlr = 0.05\nepochs = 5\n"}


def test_edit_of_a_file_matching_an_editable_glob_is_accepted(cfg):
    edit = Edit(file="models/net.py", search="width = 16", replace="width = 32")
    result = check(run(edits=[edit]), cfg, read)
    assert result.accepted
    assert result.files == {"models/net.py": "width = 32\n"}


@pytest.mark.parametrize(
    "path",
    [
        "IDEA.md",
        "nightlab.toml",
        "../train.py",
        "models/../train.py",
        "/work/lab/train.py",
        "/train.py",
        "models\\net.py",
        "",
        "  ",
    ],
)
def test_edit_outside_the_editable_files_is_rejected(cfg, path):
    result = check(run(edits=[Edit(file=path, search="", replace="x\n")]), cfg, read)
    assert not result.accepted
    assert "is not editable" in result.reasons[0]
    assert result.files == {}


def test_editable_matches_globs_but_never_leaves_the_lab():
    assert matches("train.py", ["train.py"])
    assert matches("models/a.py", ["models/*.py"])
    assert not matches("models/a.txt", ["models/*.py"])
    assert not matches("Train.py", ["train.py"])  # case matters
    assert not matches("../models/a.py", ["*"])
    assert not matches("/etc/passwd", ["*"])


def test_edit_whose_search_text_is_absent_is_rejected(cfg):
    edit = Edit(file="train.py", search="lr = 0.5", replace="lr = 0.05")
    result = check(run(edits=[edit]), cfg, read)
    assert not result.accepted
    assert result.reasons == ["edit of 'train.py': search text not found (must match once)"]


def test_edit_whose_search_text_appears_twice_is_rejected(cfg):
    edit = Edit(file="train.py", search="= ", replace="= 1")
    result = check(run(edits=[edit]), cfg, read)
    assert not result.accepted
    assert "found 2 times" in result.reasons[0]


def test_two_edits_on_one_file_apply_in_sequence(cfg):
    edits = [
        Edit(file="train.py", search="lr = 0.1", replace="lr = 0.05\nmomentum = 0.9"),
        Edit(file="train.py", search="momentum = 0.9", replace="momentum = 0.95"),
        Edit(file="train.py", search="epochs = 5", replace="epochs = 8"),
    ]
    result = check(run(edits=edits), cfg, read)
    assert result.accepted, result.reasons
    assert result.files == {
        "train.py": "import torch\nlr = 0.05\nmomentum = 0.95\nepochs = 8\n",
    }


def test_empty_search_creates_a_file_matching_an_editable_glob(cfg):
    edit = Edit(file="models/resnet.py", search="", replace="depth = 18\n")
    result = check(run(edits=[edit]), cfg, read)
    assert result.accepted
    assert result.files == {"models/resnet.py": "depth = 18\n"}


def test_empty_search_replaces_a_whole_existing_file(cfg):
    result = check(run(edits=[Edit(file="train.py", search="", replace="new\n")]), cfg, read)
    assert result.accepted
    assert result.files == {"train.py": "new\n"}


def test_created_file_can_be_edited_by_a_later_edit(cfg):
    edits = [
        Edit(file="models/resnet.py", search="", replace="depth = 18\n"),
        Edit(file="models/resnet.py", search="18", replace="34"),
    ]
    result = check(run(edits=edits), cfg, read)
    assert result.files == {"models/resnet.py": "depth = 34\n"}


def test_search_in_a_missing_file_is_rejected(cfg):
    edit = Edit(file="models/resnet.py", search="depth", replace="width")
    result = check(run(edits=[edit]), cfg, read)
    assert not result.accepted
    assert "does not exist" in result.reasons[0]


def test_rejected_decision_returns_no_files(cfg):
    edits = [
        Edit(file="train.py", search="lr = 0.1", replace="lr = 0.05"),  # fine on its own
        Edit(file="models/net.py", search="width = 99", replace="width = 32"),  # absent
    ]
    result = check(run(edits=edits), cfg, read)
    assert not result.accepted
    assert result.files == {}
    assert len(result.reasons) == 1


def test_bad_params_void_good_edits(cfg):
    edit = Edit(file="train.py", search="lr = 0.1", replace="lr = 0.05")
    result = check(run(params={"lr": 5.0}, edits=[edit]), cfg, read)
    assert not result.accepted
    assert result.files == {}


def test_every_problem_is_reported(cfg):
    decision = run(
        rationale="try",
        params={"lr": 5.0},
        edits=[Edit(file="README.md", search="", replace="x")],
    )
    result = check(decision, cfg, read)
    assert len(result.reasons) == 3


# actions other than run ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["wait", "analyze", "research", "report", "stop"])
def test_non_run_action_carrying_params_is_rejected(cfg, action):
    result = check(Decision(action=action, rationale=GOOD, params={"lr": 0.01}), cfg, read)
    assert not result.accepted
    assert f"action {action!r} carries params/edits" in result.reasons[0]


def test_non_run_action_carrying_edits_is_rejected(cfg):
    edit = Edit(file="train.py", search="lr = 0.1", replace="lr = 0.05")
    result = check(Decision(action="analyze", rationale=GOOD, edits=[edit]), cfg, read)
    assert not result.accepted
    assert result.files == {}


# an accepted decision can be committed ------------------------------------------------------


@pytest.fixture
def workspace(tmp_path, isolated_git) -> tuple[Workspace, str]:
    lab = tmp_path / "lab"
    (lab / "models").mkdir(parents=True)
    for rel, text in BASE_FILES.items():
        (lab / rel).write_text(text)
    git(lab, "init", "-q", "-b", "main")
    (lab / ".nightlab").mkdir()
    ws = Workspace(lab, lab / ".nightlab", "t")
    return ws, ws.snapshot()


def ws_reader(ws: Workspace, base: str):
    return lambda p: ws.read(base, p) if ws.exists(base, p) else None


def test_accepted_edits_commit_on_top_of_the_base(cfg, workspace):
    ws, base = workspace
    edits = [
        Edit(file="train.py", search="lr = 0.1\n", replace="lr = 0.05\n"),
        Edit(file="models/extra.py", search="", replace="x = 1\n"),
    ]
    result = check(run(edits=edits), cfg, ws_reader(ws, base))
    assert result.accepted, result.reasons
    commit = ws.commit_files(base, result.files, "m")
    changed = git(ws.lab, "diff", "--name-only", base, commit).split()
    assert sorted(changed) == ["models/extra.py", "train.py"]
    assert ws.read(commit, "train.py") == "import torch\nlr = 0.05\nepochs = 5\n"


@pytest.mark.parametrize("path", ["./train.py", "train.py/", "models//net.py"])
def test_accepted_edit_paths_can_be_committed(cfg, workspace, path):
    ws, base = workspace
    result = check(
        run(edits=[Edit(file=path, search="", replace="y = 2\n")]), cfg, ws_reader(ws, base)
    )
    if result.accepted:  # rejecting such a path is fine too; accepting then crashing is not
        commit = ws.commit_files(base, result.files, "m")
        assert len(git(ws.lab, "diff", "--name-only", base, commit).split()) == 1
