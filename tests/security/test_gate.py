"""Hostile paths at the gate: each is a rejected decision with a reason naming its rule,
whatever `[trial] editable` says (here `**`: every file), never an exception and never a
commit git cannot check out."""

from __future__ import annotations

import pytest

from nightlab.agents.decision import Decision, Edit
from nightlab.agents.gate import MAX_NAME_BYTES, check
from nightlab.config import Config
from nightlab.trials.workspace import Workspace

from conftest import git, make_config

GOOD = "a hostile path, judged by the gate"
BASE = {"train.py": "lr = 0.1\n", "models/net.py": "width = 16\n", "IDEA.md": "brief\n"}


def config(**agents: str) -> Config:
    return make_config(trial={"editable": ["**"]}, agents=agents)


def judge(path: str, cfg: Config | None = None, **kw):
    edit = Edit(file=path, search="", replace="x = 1\n")
    decision = Decision(action="run", rationale=GOOD, edits=[edit])
    return check(decision, cfg or config(), BASE.get, **kw)


def refused(path: str, rule: str, cfg: Config | None = None) -> None:
    result = judge(path, cfg)
    assert not result.accepted and result.files == {}
    assert len(result.reasons) == 1 and rule in result.reasons[0], result.reasons


# (a) names git or the file system cannot take ---------------------------------------------


@pytest.mark.parametrize("path", ["x" * 300 + ".py", "gen/" + "x" * 300 + ".py",
                                  "é" * 128 + "/a.py"])  # fmt: skip
def test_a_name_over_255_bytes_is_refused(path):
    refused(path, "bytes (at most 255: the file system cannot create it)")


def test_a_name_over_the_limit_is_refused_under_a_narrow_glob_too():
    cfg = make_config(trial={"editable": ["gen/*.py"]})
    refused("gen/" + "y" * 300 + ".py", "a file or folder name of 303 bytes", cfg)


def test_the_limits_count_utf8_bytes_not_characters():
    assert judge("é" * 126 + ".py").accepted  # 129 characters, 255 bytes
    refused("é" * 127 + ".py", "a file or folder name of 257 bytes")  # 130 characters


def test_a_path_over_1024_bytes_is_refused():
    refused("a/" * 520 + "x.py", "the path is 1044 bytes long (at most 1024)")


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("a\x7fb.py", "'\\x7f'"),  # DEL
        ("a\x85b.py", "'\\x85'"),  # a C1 control
        ("evil\u202eyp.py", "'\\u202e'"),  # right-to-left override
        ("zero\u200bwidth.py", "'\\u200b'"),
        (".gi\u200ct/config", "'\\u200c'"),  # HFS ignores it: .git on a Mac
    ],
)
def test_control_and_invisible_characters_are_refused(path, shown):
    refused(path, f"it holds {shown}")


def test_a_lone_surrogate_is_refused_not_an_encoding_crash():
    refused("bad\udc80.py", "not valid Unicode text")


def test_pathspec_magic_is_refused():
    refused(":(top)train.py", "a leading ':' is git pathspec magic")


@pytest.mark.parametrize("path", ["GIT~1/config", ".git./config", ".GIT /hooks/x", "sub/.git. /x"])
def test_gits_folder_in_any_spelling_is_refused(path):
    refused(path, "git's own folder is never edited")


# (d) nightlab's own files, whatever editable says ------------------------------------------


@pytest.mark.parametrize("path", ["nightlab.toml", "NightLab.TOML"])
def test_the_configuration_is_never_editable(path):
    refused(path, "nightlab.toml is nightlab's configuration")


@pytest.mark.parametrize("path", ["IDEA.md", "WORKER_MISSION.md", "MENTOR_MISSION.md"])
def test_the_brief_and_the_missions_are_never_editable(path):
    refused(path, "read into every prompt and never edited by a decision")


def test_a_brief_and_missions_named_in_the_config_are_never_editable():
    cfg = make_config(
        lab={"name": "t", "brief": "./docs/Brief.md"},
        trial={"editable": ["**"]},
        agents={"mission_file": "agents/all.md", "worker_mission": "agents/w.md"},
    )
    for path in ("docs/Brief.md", "agents/all.md", "agents/w.md"):
        refused(path, "read into every prompt", cfg)
    assert judge("IDEA.md", cfg).accepted  # no longer the brief: an ordinary file


@pytest.mark.parametrize("path", [".nightlab/state.db", ".nightlab/x.py", "sub/.NightLab/x"])
def test_the_state_folder_is_never_editable(path):
    refused(path, "nightlab's state folder (.nightlab/) is never edited")


@pytest.mark.parametrize("path", [".git/config", ".git/hooks/post-checkout"])
def test_gits_folder_is_never_editable(path):
    result = judge(path)
    assert not result.accepted and "is not editable" in result.reasons[0]


def test_a_refused_path_voids_the_whole_decision():
    edits = [Edit(file="train.py", search="", replace="ok\n"),
             Edit(file="nightlab.toml", search="", replace="[lab]\n")]  # fmt: skip
    result = check(Decision(action="run", rationale=GOOD, edits=edits), config(), BASE.get)
    assert not result.accepted and result.files == {} and len(result.reasons) == 1


# symlinks, folders and files below files, on a real base commit ---------------------------


@pytest.fixture
def base(tmp_path, isolated_git) -> tuple[Workspace, str]:
    lab = tmp_path / "lab"
    (lab / "models").mkdir(parents=True)
    for rel, text in BASE.items():
        (lab / rel).write_text(text)
    (lab / "link.py").symlink_to("train.py")
    (lab / "datasets").symlink_to("/data")
    git(lab, "init", "-q")
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "the user's lab, links included")
    (lab / ".nightlab").mkdir()
    ws = Workspace(lab, lab / ".nightlab", "t")
    return ws, ws.snapshot()


def gate(ws: Workspace, commit: str, *edits: Edit):
    decision = Decision(action="run", rationale=GOOD, edits=list(edits))
    return check(
        decision, config(),
        read=lambda p: ws.read(commit, p) if ws.exists(commit, p) else None,
        mode=lambda p: ws.mode(commit, p),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("link.py", "is not a regular file (120000): it is a symlink in the base commit"),
        ("datasets", "is not a regular file (120000): it is a symlink in the base commit"),
        ("datasets/x.py", "its parent 'datasets' is a symlink in the base commit"),
        ("models", "is not a regular file (040000): it is a folder in the base commit"),
        ("train.py/x.py", "its parent 'train.py' is a file in the base commit"),
        ("models/net.py/deeper/x.py", "its parent 'models/net.py' is a file"),
    ],
)
def test_what_is_not_a_regular_file_of_the_base_is_refused(base, path, rule):
    ws, commit = base
    result = gate(ws, commit, Edit(file=path, search="", replace="/etc/passwd"))
    assert not result.accepted and result.files == {}
    assert len(result.reasons) == 1 and rule in result.reasons[0], result.reasons


def test_one_decision_cannot_write_a_path_as_file_and_folder(base):
    ws, commit = base
    result = gate(ws, commit, Edit(file="new", search="", replace="x\n"),
                  Edit(file="new/x.py", search="", replace="y\n"))  # fmt: skip
    assert not result.accepted
    assert "another edit of this decision writes 'new' as a file" in result.reasons[0]


def test_ordinary_edits_still_pass_and_a_name_at_the_limit_checks_out(base):
    ws, commit = base
    longest = "n" * (MAX_NAME_BYTES - 3) + ".py"
    result = gate(
        ws, commit,
        Edit(file="models/net.py", search="16", replace="32"),
        Edit(file="models/new/deep/x.py", search="", replace="x = 1\n"),
        Edit(file=f"gen/{longest}", search="", replace="y = 2\n"),
    )  # fmt: skip
    assert result.accepted, result.reasons
    new = ws.commit_files(commit, result.files, "m")
    tree = ws.checkout("t1", new, share=[])  # what the night does before a trial
    assert (tree / "gen" / longest).read_text() == "y = 2\n"
    assert (tree / "datasets").is_symlink()  # the user's link is theirs, untouched


@pytest.mark.parametrize("path", ["data/test/labels.csv", "data/test/new.csv", "data/test",
                                  "data/test.csv"])  # fmt: skip
def test_held_out_test_data_is_never_written_by_a_decision(path):
    """Whatever the globs say (load refuses an editable glob over existing test files; a
    generated glob could still reach a new one): no decision writes under a test path."""
    cfg = make_config(trial={"editable": ["**"]},
                      objective={"metric": "score", "direction": "maximize",
                                 "test_paths": ["data/test/", "data/test.csv", "/abs/test"]})
    refused(path, "held-out test data ([objective] test_paths)", cfg)
    assert judge("data/testing.py", cfg).accepted and judge("data/train.csv", cfg).accepted
