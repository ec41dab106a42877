"""The boxes other than a trial's: a coding agent's (its scratch copy, its prompt, its own
settings folder in $HOME, nothing of the lab), a smoke check's (a throwaway copy), and a
node without bubblewrap (nothing runs unsealed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nightlab.config import load_config
from nightlab.trials import sandbox
from nightlab.trials.local import sandboxed_wrapper
from nightlab.trials.watch import TrialSpec

from conftest import build_lab, git

if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

PROBE = r"""
for path in "$@"; do
  if [ -e "$path" ]; then seen=seen; else seen=absent; fi
  if ( echo x >> "$path" ) 2>/dev/null; then echo "$path $seen writable"
  else echo "$path $seen no-write"; fi
done
"""


def probe(argv: list[str], paths: list[Path], cwd: Path, env: dict | None = None) -> dict:
    done = subprocess.run(
        [*argv, "/bin/sh", "-c", PROBE, "probe", *map(str, paths)],
        cwd=cwd, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        line.rsplit(" ", 2)[0]: tuple(line.rsplit(" ", 2)[1:])
        for line in done.stdout.split("\n")
        if line
    }


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    lab = build_lab(tmp_path / "lab")
    git(lab, "add", "-A")
    git(lab, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    (lab / ".nightlab" / "trials" / "1").mkdir(parents=True)
    (lab / ".nightlab" / "state.db").write_text("the record")
    return lab


@pytest.fixture
def home(monkeypatch):
    """A $HOME outside /tmp (a box has a private /tmp of its own)."""
    home = Path(tempfile.mkdtemp(prefix="nightlab-home-", dir="/var/tmp"))
    monkeypatch.setenv("HOME", str(home))
    yield home
    shutil.rmtree(home)


def test_a_coding_agent_writes_its_scratch_and_its_settings_only(lab, home):
    (home / ".codex").mkdir(parents=True)
    (home / ".bashrc").write_text("# the user's\n")
    run = lab / ".nightlab" / "agents" / "r1"
    work = run / "work"
    work.mkdir(parents=True)
    (run / "prompt.md").write_text("the prompt")
    cfg = load_config(lab)
    box = sandbox.agent_box(cfg, lab, work, run / "prompt.md", ["codex", "exec"])
    seen = probe(sandbox.prefix(cfg, lab, box), [
        work / "edit.py", run / "prompt.md", home / ".codex" / "auth.json", home / ".bashrc",
        lab / "train.py", lab / "nightlab.toml", lab / ".nightlab" / "state.db",
        lab / ".git" / "config", lab / ".nightlab" / "trials" / "1",
    ], work)  # fmt: skip
    assert seen[str(work / "edit.py")][1] == "writable"
    assert seen[str(run / "prompt.md")] == ("seen", "no-write")
    assert seen[str(home / ".codex" / "auth.json")][1] == "writable"  # its own settings
    assert seen[str(home / ".bashrc")] == ("seen", "no-write")  # never the user's shell
    for hidden in ("train.py", "nightlab.toml", ".nightlab/state.db", ".git/config"):
        assert seen[str(lab / hidden)][0] == "absent", hidden
    assert (lab / "nightlab.toml").read_text().endswith("\n") and "x" not in (
        lab / ".nightlab" / "state.db"
    ).read_text().replace("the record", "")


def test_a_smoke_check_sees_its_throwaway_copy_only(lab):
    cfg = load_config(lab)
    scratch = lab / ".nightlab" / "smoke-1"
    scratch.mkdir()
    box = sandbox.smoke_box(cfg, lab, scratch)
    spare = lab / ".nightlab" / "worktrees" / "t1"
    spare.mkdir(parents=True)
    seen = probe(sandbox.prefix(cfg, lab, box),
                 [scratch / "m.py", spare / "train.py", lab / "train.py"], scratch)  # fmt: skip
    assert seen[str(scratch / "m.py")][1] == "writable"
    assert seen[str(spare / "train.py")][0] == "absent"  # a spare tree is out of its reach
    assert seen[str(lab / "train.py")][0] == "absent"
    assert not (spare / "train.py").exists()


def test_a_node_without_bubblewrap_runs_nothing_unsealed(lab, tmp_path):
    """On a Slurm node the box is built by the job; no bwrap there: the trial fails, saying
    why, and its command never ran."""
    cfg = load_config(lab)
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    marker = tmp_path / "ran"
    spec = TrialSpec(
        trial_id=1, command=f"touch {marker}", workdir=lab, trial_dir=trial_dir, env={},
        budget_s=60, hang_s=None, metric="score", reduce="last", maximize=True,
        sandbox=sandbox.prefix(cfg, lab, sandbox.Box(writable=(lab,))),
    )  # fmt: skip
    bare = tmp_path / "bin"  # a PATH with a shell's tools but no bwrap
    bare.mkdir()
    for tool in ("uname", "cat", "touch"):
        (bare / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bare), "NIGHTLAB_TRIAL_DIR": str(trial_dir)}
    done = subprocess.run(["/bin/sh", "-c", sandboxed_wrapper(spec)], cwd=lab, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 126
    assert "bubblewrap is not installed on" in done.stderr and "sandbox" in done.stderr
    assert not marker.exists()
    assert (trial_dir / "exit_code").read_text() == "126"


def test_the_night_says_at_start_what_it_cannot_seal(lab):
    cfg = load_config(lab)
    assert sandbox.unsealed_warning(cfg) is None
    none = cfg.model_copy(update={"trial": cfg.trial.model_copy(update={"sandbox": "none"})})
    assert "unsealed" in sandbox.unsealed_warning(none)
    assert "test data" not in sandbox.unsealed_warning(none)
    held = none.model_copy(update={"objective": none.objective.model_copy(
        update={"test_paths": ["data/test.csv"]})})  # fmt: skip
    assert "every trial and agent can read the test data" in sandbox.unsealed_warning(held)
    slurm = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"kind": "slurm"})})
    assert "node without it does not run" in sandbox.unsealed_warning(slurm)


@pytest.mark.parametrize("kind", ["trial", "smoke", "evaluation"])
def test_a_trials_box_hides_the_credentials_in_home(lab, home, kind):
    """$HOME is read-only for a trial, and the credentials there are not in its box at all
    (a link to them is masked where it leads); nor in a smoke check's (of a module an agent
    wrote; also adopt's check of a rewritten config), whose output is recorded, nor in an
    evaluation's (loading a trial's artifacts may run the trial's code)."""
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".netrc").write_text("machine hub password hunter2")
    (home / "real-aws").mkdir()
    (home / "real-aws" / "credentials").write_text("aws_secret_access_key = x")
    (home / ".aws").symlink_to(home / "real-aws")
    (home / "notes.txt").write_text("ordinary")
    cfg = load_config(lab)
    tree, out = lab / ".nightlab" / "worktrees" / "t0", lab / ".nightlab" / "trials" / "1" / "out"
    tree.mkdir(parents=True)
    out.mkdir(parents=True)
    box = {"trial": lambda: sandbox.trial_box(cfg, lab, tree, tree, out, []),
           "smoke": lambda: sandbox.smoke_box(cfg, lab, tree),
           "evaluation": lambda: sandbox.eval_box(cfg, lab, tree, out, [])}[kind]()
    script = "cat ~/.ssh/id_ed25519 ~/.netrc ~/.aws/credentials ~/notes.txt 2>/dev/null; true"
    done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script],
                          cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout == "ordinary"


def test_a_protected_file_cannot_be_swapped_by_renaming_its_folder(lab):
    """Each folder from the tree down to a protected file is a mount point: `mv ev ev2 &&
    mkdir ev && write ev/evaluate.py` fails, and so does writing the file itself."""
    cfg = load_config(lab)
    tree, out = lab / ".nightlab" / "worktrees" / "t0", lab / ".nightlab" / "trials" / "1" / "out"
    (tree / "ev").mkdir(parents=True)
    (tree / "ev" / "evaluate.py").write_text("print('score=0.5')\n")
    out.mkdir(parents=True)
    box = sandbox.trial_box(cfg, lab, tree, tree, out, ["ev/evaluate.py"])
    script = (
        "mv ev ev2 2>/dev/null && echo renamed; echo 'print(1)' > ev/evaluate.py 2>/dev/null "
        "&& echo written; echo ok > other.txt && echo tree-writable"
    )
    done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script],
                          cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout.split() == ["tree-writable"]
    assert (tree / "ev" / "evaluate.py").read_text() == "print('score=0.5')\n"


def test_a_fifo_or_link_at_a_protected_path_counts_as_changed_without_blocking(tmp_path):
    import hashlib

    from nightlab.trials import protect

    (tmp_path / "real.py").write_text("x")
    digest = hashlib.sha256(b"x").hexdigest()
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "link.py").symlink_to(tmp_path / "real.py")
    hashes = {"real.py": digest, "fifo.py": digest, "link.py": digest}
    assert protect.changed(tmp_path, hashes) == ["fifo.py", "link.py"]


def test_a_linked_state_folder_and_shared_test_data_stay_hidden(tmp_path):
    """`.nightlab` and a `share` entry may be links to another disk: what they hold is
    hidden (or masked) where it really lies, not only under the lab's names for it."""
    far = Path(tempfile.mkdtemp(prefix="nightlab-far-", dir="/var/tmp"))
    try:
        (far / "state").mkdir()
        (far / "state" / "state.db").write_text("the record")
        (far / "data").mkdir()
        (far / "data" / "test.csv").write_text("held,out")
        (far / "data" / "train.csv").write_text("train")
        lab = build_lab(tmp_path / "lab")
        (lab / ".nightlab").symlink_to(far / "state")
        (lab / "data").symlink_to(far / "data")
        toml = lab / "nightlab.toml"
        toml.write_text(
            toml.read_text()
            .replace("[trial]\n", '[trial]\nshare = ["data"]\n')
            .replace(
                'direction = "maximize"', 'direction = "maximize"\ntest_paths = ["data/test.csv"]'
            )
        )
        cfg = load_config(lab)
        tree, out = far / "state" / "worktrees" / "t0", far / "state" / "trials" / "1" / "out"
        tree.mkdir(parents=True)
        out.mkdir(parents=True)
        (tree / "data").symlink_to(lab / "data")
        box = sandbox.trial_box(cfg, lab, tree, tree, out, [])
        script = (f"cat {far}/state/state.db {far}/data/test.csv data/test.csv 2>/dev/null;"
                  f" cat data/train.csv")  # fmt: skip
        done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script],
                              cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.stdout == "train", done.stderr
    finally:
        shutil.rmtree(far)


def test_the_mlflow_mirror_writes_only_under_the_labs_artifact_folder(tmp_path):
    from nightlab.tracking import guard

    root = tmp_path / "mlartifacts"
    (root / "1" / "run" / "artifacts").mkdir(parents=True)
    assert guard.sealed((root / "1" / "run" / "artifacts").as_uri(), root)
    assert guard.sealed(str(root / "1" / "new-run" / "artifacts"), root)  # not made yet
    assert guard.sealed("mlflow-artifacts:/1/run/artifacts", root)  # a server's: not local
    assert not guard.sealed((tmp_path / "elsewhere").as_uri(), root)
    assert not guard.sealed(f"file://{root}/1/../../elsewhere", root)
    (root / "2").symlink_to(tmp_path)  # a link the trial planted on the way
    assert not guard.sealed((root / "2" / "run" / "artifacts").as_uri(), root)


def test_test_data_outside_the_lab_is_absent_from_every_box_but_the_test_runs(lab):
    """`test_paths` may name data outside the lab (/data/test): every box but the final
    pick's test run hides it — a trial's, a smoke check's, a coding agent's."""
    far = Path(tempfile.mkdtemp(prefix="nightlab-test-data-", dir="/var/tmp"))
    try:
        (far / "test").mkdir()
        (far / "test" / "labels.csv").write_text("held,out")
        (far / "train.csv").write_text("train")
        toml = lab / "nightlab.toml"
        toml.write_text(toml.read_text().replace(
            'direction = "maximize"', f'direction = "maximize"\ntest_paths = ["{far / "test"}"]'))
        cfg = load_config(lab)
        tree, out = lab / ".nightlab" / "worktrees" / "t0", lab / ".nightlab" / "trials" / "1"
        tree.mkdir(parents=True)
        boxes = {
            "trial": sandbox.trial_box(cfg, lab, tree, tree, out, []),
            "smoke": sandbox.smoke_box(cfg, lab, tree),
            "agent": sandbox.agent_box(cfg, lab, tree, lab / "IDEA.md", []),
            "test run": sandbox.trial_box(cfg, lab, tree, tree, out, [], test=True),
        }
        script = f"cat {far}/test/labels.csv 2>/dev/null; cat {far}/train.csv"
        seen = {}
        for name, box in boxes.items():
            done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script],
                                  cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
            seen[name] = done.stdout
        assert seen == {"trial": "train", "smoke": "train", "agent": "train",
                        "test run": "held,outtrain"}  # fmt: skip
    finally:
        shutil.rmtree(far)


def test_under_evaluate_the_test_runs_training_never_sees_the_test_data(lab):
    """With `[trial] evaluate` the held-out figure is the evaluation's: the test run's own
    training step (the agent's code) must not see the test data — it could copy the labels
    into its artifacts as its 'predictions' and score perfectly. Its evaluation sees them."""
    (lab / "data").mkdir()
    (lab / "data" / "test.csv").write_text("held,out")
    (lab / "data" / "train.csv").write_text("train")
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace("[trial]\n", '[trial]\nshare = ["data"]\nevaluate = "python train.py"\n'
                 'protected = ["train.py"]\n')
        .replace('direction = "maximize"', 'direction = "maximize"\ntest_paths = ["data/test.csv"]')
    )  # fmt: skip
    cfg = load_config(lab)
    tree, out = lab / ".nightlab" / "worktrees" / "t0", lab / ".nightlab" / "trials" / "1" / "out"
    folder = lab / ".nightlab" / "trials" / "1" / "eval"
    for made in (tree, out / "artifacts", folder):
        made.mkdir(parents=True)
    for where in (tree, folder):
        (where / "data").symlink_to(lab / "data")
    boxes = {
        "test run": (sandbox.trial_box(cfg, lab, tree, tree, out, [], test=True), tree),
        "its evaluation": (sandbox.eval_box(cfg, lab, folder, out / "artifacts", [], test=True),
                           folder),
    }  # fmt: skip
    seen = {}
    for name, (box, cwd) in boxes.items():
        done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c",
                               "cat data/test.csv 2>/dev/null; cat data/train.csv"],
                              cwd=cwd, capture_output=True, text=True, timeout=60)  # fmt: skip
        seen[name] = done.stdout
    assert seen == {"test run": "train", "its evaluation": "held,outtrain"}


def test_the_test_run_writes_nothing_a_later_trial_reads(lab):
    """The test run sees the test data: `share_writable` (a cache every later trial, of
    any later night too, reads) is read-only to it, or it could copy the labels there."""
    (lab / "cache").mkdir()
    (lab / "data").mkdir()
    (lab / "data" / "test.csv").write_text("held,out")
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace("[trial]\n", '[trial]\nshare = ["data", "cache"]\nshare_writable = ["cache"]\n')
        .replace('direction = "maximize"', 'direction = "maximize"\ntest_paths = ["data/test.csv"]')
    )  # fmt: skip
    cfg = load_config(lab)
    tree, out = lab / ".nightlab" / "worktrees" / "t0", lab / ".nightlab" / "trials" / "1" / "out"
    for made in (tree, out):
        made.mkdir(parents=True)
    for entry in ("data", "cache"):
        (tree / entry).symlink_to(lab / entry)
    script = "cp data/test.csv cache/leak.csv 2>/dev/null; cat data/test.csv"
    for test, leaked in ((False, False), (True, False)):
        box = sandbox.trial_box(cfg, lab, tree, tree, out, [], test=test)
        done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script],
                              cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.stdout == ("held,out" if test else ""), done.stderr
        assert (lab / "cache" / "leak.csv").exists() == leaked
    box = sandbox.trial_box(cfg, lab, tree, tree, out, [])
    done = subprocess.run([*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", "echo ok > cache/x"],
                          cwd=tree, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (lab / "cache" / "x").read_text() == "ok\n", "an ordinary trial still writes its cache"
