"""nightlab's git plumbing in real repositories: snapshots and trial commits never touch the
user's branch, index or working tree; trial worktrees are clean checkouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightlab.trials.workspace import Workspace, WorkspaceError, diff_text

from conftest import git

pytestmark = pytest.mark.usefixtures("isolated_git")  # conftest: no machine config


def show(repo: Path, commit: str, path: str) -> str:
    """A file's exact content at a commit (top-level path)."""
    return git(repo, "show", f"{commit}:{path}")


def files_at(repo: Path, commit: str) -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", commit).split())


def user_state(repo: Path) -> tuple[str, str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "diff", "--cached"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
    )


def make_ws(lab: Path, name: str = "my lab") -> Workspace:
    state = lab / ".nightlab"
    state.mkdir(parents=True, exist_ok=True)
    return Workspace(lab, state, name)


@pytest.fixture
def lab(tmp_path) -> Path:
    """A lab that is a repository: committed train.py modified on disk, an untracked note, an
    ignored data folder."""
    lab = tmp_path / "lab"
    lab.mkdir()
    git(lab, "init", "-q", "-b", "main")
    (lab / "train.py").write_text("lr = 0.1\n")
    (lab / "IDEA.md").write_text("idea\n")
    (lab / ".gitignore").write_text("data/\n")
    git(lab, "add", "-A")
    git(lab, "commit", "-q", "-m", "init")
    (lab / "train.py").write_text("lr = 0.2\n")  # uncommitted modification
    (lab / "notes.txt").write_text("untracked\n")  # untracked, not ignored
    (lab / "data").mkdir()
    (lab / "data" / "train.csv").write_text("1,2\n")  # ignored
    return lab


# snapshot ------------------------------------------------------------------------------------


def test_snapshot_commits_the_working_tree_without_touching_the_users_checkout(lab):
    head = git(lab, "rev-parse", "HEAD").strip()
    ws = make_ws(lab)
    (lab / ".nightlab" / "state.db").write_text("not code")
    before = user_state(lab)

    sha = ws.snapshot()

    assert show(lab, sha, "train.py") == "lr = 0.2\n"  # the modification, not HEAD's
    assert show(lab, sha, "notes.txt") == "untracked\n"
    assert files_at(lab, sha) == {".gitignore", "IDEA.md", "train.py", "notes.txt"}
    assert git(lab, "rev-parse", f"{sha}^").strip() == head
    assert git(lab, "rev-parse", f"{ws.refs}/base").strip() == sha
    assert user_state(lab) == before
    assert git(lab, "diff", "--cached") == ""
    assert (lab / "train.py").read_text() == "lr = 0.2\n"
    assert git(lab, "status", "--porcelain").splitlines() == [" M train.py", "?? notes.txt"]


def test_state_folder_is_excluded_once(lab):
    make_ws(lab)
    make_ws(lab)
    exclude = (lab / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".nightlab/") == 1
    assert ".nightlab" not in git(lab, "status", "--porcelain", "--untracked-files=all")


def test_snapshot_of_an_unchanged_lab_has_heads_tree(tmp_path):
    lab = tmp_path / "clean"
    lab.mkdir()
    git(lab, "init", "-q", "-b", "main")
    (lab / "train.py").write_text("x = 1\n")
    git(lab, "add", "-A")
    git(lab, "commit", "-q", "-m", "init")
    sha = make_ws(lab).snapshot()
    assert git(lab, "rev-parse", f"{sha}^{{tree}}") == git(lab, "rev-parse", "HEAD^{tree}")


def test_read_returns_the_exact_file_content(lab):
    (lab / "train.py").write_text("\n  indented = 1\nlr = 0.2\n")
    ws = make_ws(lab)
    sha = ws.snapshot()
    assert ws.read(sha, "train.py") == "\n  indented = 1\nlr = 0.2\n"


def test_read_and_exists(lab):
    ws = make_ws(lab)
    sha = ws.snapshot()
    assert ws.read(sha, "notes.txt") == "untracked\n"
    assert ws.exists(sha, "train.py")
    assert not ws.exists(sha, "missing.py")
    assert not ws.exists(sha, "data/train.csv")  # ignored files are not code
    with pytest.raises(WorkspaceError):
        ws.read(sha, "missing.py")


def test_big_untracked_file_is_refused_by_name(lab):
    ws = make_ws(lab)
    with open(lab / "weights.bin", "wb") as fh:
        fh.truncate(51 * 10**6)  # sparse: nothing is written
    with pytest.raises(WorkspaceError) as info:
        ws.snapshot()
    assert "weights.bin" in str(info.value)
    assert ".gitignore" in str(info.value)
    assert git(lab, "rev-parse", "--verify", "-q", f"{ws.refs}/base", check=False) == ""

    with open(lab / ".gitignore", "a") as fh:
        fh.write("*.bin\n")
    sha = ws.snapshot()
    assert "weights.bin" not in files_at(lab, sha)


def test_big_ignored_file_is_fine(lab):
    with open(lab / "data" / "huge.npy", "wb") as fh:
        fh.truncate(60 * 10**6)
    sha = make_ws(lab).snapshot()
    assert "data/huge.npy" not in files_at(lab, sha)


# commits -------------------------------------------------------------------------------------


def test_commit_files_changes_only_those_files_and_nothing_on_disk(lab):
    ws = make_ws(lab)
    base = ws.snapshot()
    before = user_state(lab)

    new = ws.commit_files(
        base, {"train.py": "lr = 0.3\n", "models/net.py": "W = 4\n"}, "try lr 0.3"
    )

    assert git(lab, "rev-parse", f"{new}^").strip() == base
    assert git(lab, "log", "-1", "--format=%s", new).strip() == "try lr 0.3"
    changed = git(lab, "diff", "--name-status", base, new).splitlines()
    assert sorted(changed) == ["A\tmodels/net.py", "M\ttrain.py"]
    assert show(lab, new, "train.py") == "lr = 0.3\n"
    assert show(lab, new, "notes.txt") == "untracked\n"
    assert user_state(lab) == before
    assert (lab / "train.py").read_text() == "lr = 0.2\n"
    assert not (lab / "models").exists()


def test_diff_between_commits(lab):
    ws = make_ws(lab)
    base = ws.snapshot()
    new = ws.commit_files(base, {"train.py": "lr = 0.3\n"}, "m")
    patch = ws.diff(base, new)
    assert "train.py" in patch
    assert "-lr = 0.2" in patch
    assert "+lr = 0.3" in patch
    assert "notes.txt" not in patch
    assert ws.diff(base, base) == ""


def test_diff_text_of_a_huge_commit_is_cut_without_reading_it_whole(lab):
    """A trial that commits a 24 MB file: the report's diff is cut at its limit, says the
    whole size, and reading it never holds the whole diff in memory."""
    import tracemalloc

    ws = make_ws(lab)
    base = ws.snapshot()
    line = "x" * 99 + "\n"
    new = ws.commit_files(base, {"blob.txt": line * 240_000}, "a huge file")
    tracemalloc.start()
    try:
        text = diff_text(lab, base, new, 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text is not None
    assert text.startswith("diff --git a/blob.txt b/blob.txt")
    head, _, tail = text.rpartition("\n… cut at 4096 bytes of ")
    assert len(head.encode()) == 4096
    assert int(tail.strip()) > 24_000_000
    assert peak < 2_000_000, f"diff_text held {peak} bytes"
    assert diff_text(lab, base, "no-such-commit", 4096) is None


def test_refs_for_trials_and_best_branch(lab):
    ws = make_ws(lab, "digits / v2")
    base = ws.snapshot()
    new = ws.commit_files(base, {"train.py": "lr = 0.3\n"}, "m")
    ws.keep_trial(7, new)
    ws.set_best(new)
    assert git(lab, "rev-parse", f"{ws.refs}/trials/7").strip() == new
    assert ws.branch.startswith("nightlab/digits-v2")  # the lab's name, made a valid ref
    assert git(lab, "rev-parse", f"refs/heads/{ws.branch}").strip() == new
    assert ws.user_branch() == "main"


# worktrees -----------------------------------------------------------------------------------


def test_checkout_gives_a_clean_worktree_with_shared_links(lab):
    ws = make_ws(lab)
    base = ws.snapshot()
    new = ws.commit_files(base, {"train.py": "lr = 0.3\n"}, "m")
    before = user_state(lab)

    work = ws.checkout("t0", base, ["data"])
    assert (work / "train.py").read_text() == "lr = 0.2\n"
    assert (work / "notes.txt").read_text() == "untracked\n"
    assert (work / "data").is_symlink()
    assert (work / "data" / "train.csv").read_text() == "1,2\n"
    assert not (work / ".git").exists()  # a plain copy: no git a trial could redirect

    (work / "stray.txt").write_text("left by a trial\n")
    (work / ".git").write_text("gitdir: /somewhere/the/trial/controls\n")
    (work / "train.py").write_text("broken by a trial\n")
    (work / "out").mkdir()
    (work / "out" / "model.pt").write_text("w")

    again = ws.checkout("t0", new, ["data"])
    assert again == work
    assert not (work / ".git").exists()
    assert (work / "train.py").read_text() == "lr = 0.3\n"
    assert not (work / "stray.txt").exists()
    assert not (work / "out").exists()
    assert (work / "data" / "train.csv").read_text() == "1,2\n"
    assert user_state(lab) == before
    assert (lab / "data" / "train.csv").read_text() == "1,2\n"  # the shared data survived


def test_slots_get_separate_worktrees(lab):
    ws = make_ws(lab)
    base = ws.snapshot()
    new = ws.commit_files(base, {"train.py": "lr = 0.3\n"}, "m")
    a = ws.checkout("t0", base, [])
    b = ws.checkout("t1", new, [])
    assert a != b
    assert (a / "train.py").read_text() == "lr = 0.2\n"
    assert (b / "train.py").read_text() == "lr = 0.3\n"


# labs outside a repository, labs inside a bigger one -----------------------------------------


def test_lab_without_a_repository_gets_one(tmp_path):
    lab = tmp_path / "plain"
    lab.mkdir()
    (lab / "train.py").write_text("x = 1\n")
    ws = make_ws(lab)
    assert (lab / ".git").is_dir()
    assert ws.prefix == ""
    sha = ws.snapshot()
    assert files_at(lab, sha) == {"train.py"}
    assert git(lab, "rev-list", "--count", sha).strip() == "1"
    work = ws.checkout("t0", sha, [])
    assert (work / "train.py").read_text() == "x = 1\n"


def test_lab_in_a_subfolder_of_a_bigger_repository(tmp_path):
    repo = tmp_path / "mono"
    lab = repo / "labs" / "a"
    lab.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("top\n")
    (lab / "train.py").write_text("lr = 0.1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    (lab / "train.py").write_text("lr = 0.2\n")
    before = user_state(repo)

    ws = make_ws(lab)
    assert ws.prefix == "labs/a/"
    assert ws.top == repo.resolve()
    assert not (lab / ".git").exists()
    assert ".nightlab/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()

    base = ws.snapshot()
    assert show(repo, base, "labs/a/train.py") == "lr = 0.2\n"
    assert show(repo, base, "README") == "top\n"
    assert ws.exists(base, "train.py")
    assert ws.read(base, "train.py") == "lr = 0.2\n"

    new = ws.commit_files(base, {"train.py": "lr = 0.3\n"}, "m")
    assert git(repo, "diff", "--name-only", base, new).split() == ["labs/a/train.py"]
    patch = ws.diff(base, new)
    assert "labs/a/train.py" in patch and "+lr = 0.3" in patch

    work = ws.checkout("t0", new, [])
    assert work.parts[-2:] == ("labs", "a")
    assert (work / "train.py").read_text() == "lr = 0.3\n"
    assert user_state(repo) == before


def test_user_dirty_names_a_rename_in_the_working_tree_once(tmp_path):
    """A rename git sees in the working tree (an intent-to-add file, ` R new\\0old`) carries
    its source path next, as an index rename does: not one more, mangled, file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('a long enough line to be seen as renamed')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "start")
    (repo / "train.py").rename(repo / "model.py")
    git(repo, "add", "-N", "model.py")
    ws = make_ws(repo)
    assert ws.user_dirty(["train.py", "model.py"]) == ["model.py"]
