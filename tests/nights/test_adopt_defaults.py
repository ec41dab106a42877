"""`nightlab adopt` carries a trial's parameters to where the project's defaults live: a
hydra-zen config, a Hydra YAML file, `nightlab.params(...)`; what it cannot, it names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nightlab import Lab

from conftest import cli, git, rows

pytestmark = pytest.mark.slow

ZEN_APP = """
from hydra_zen import make_config, store, zen

BASE = 16
Optim = make_config(lr=0.5, name="adam")  # the optimiser
Config = make_config(optim=Optim, width=BASE * 2)


def train(optim, width):
    print(f"score={optim.lr + width / 64}", flush=True)


if __name__ == "__main__":
    store(Config, name="config")
    store.add_to_hydra_store()
    zen(train).hydra_main(config_name="config", config_path=None, version_base="1.3")
"""

ZEN_KNOBS = """params = "hydra"

[search."optim.lr"]
low = 0.0
high = 1.0

[search.width]
choices = [16, 32, 64]
"""

PARAMS_APP = """
import nightlab

BASE = 0.5
p = nightlab.params(boost=0.0, lr=BASE * 2)
print(f"score={1.0 + p['boost']}", flush=True)
"""


def adopted_night(make_lab, app: str, decision: dict, knobs: str = "", **options) -> Path:
    """A night that runs the baseline then `decision`, committed first; `app` as train.py."""
    decisions = [{"action": "run", "rationale": "the trial adopt takes", **decision}]
    lab = make_lab(decisions=decisions, max_trials=2, baseline_repeats=1, trial_extra=knobs,
                   **options)  # fmt: skip
    (lab / "train.py").write_text(app)
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "start")
    Lab(lab).run(report=lambda line: None)
    return lab


def by_hand(lab: Path) -> str:
    """train.py run as the user runs it, outside nightlab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTLAB_")}
    done = subprocess.run([sys.executable, "train.py"], cwd=lab, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout


def without_boost(lab: Path) -> None:
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("[search.boost]\nlow = 0.0\nhigh = 5.0\n"
                                             "default = 0.0\n", ""))  # fmt: skip


def replayed(lab: Path, decision: dict) -> None:
    """Run the night of `lab` (its search worker replaced by `decision`), committed first."""
    (lab / "decisions.jsonl").write_text(json.dumps({"action": "run", **decision}) + "\n")
    toml = lab / "nightlab.toml"
    text = toml.read_text().replace('worker = "search"', 'worker = "replay:decisions.jsonl"')
    toml.write_text(text.replace("max_trials = 1", "max_trials = 2"))
    git(lab, "add", "-A")
    git(lab, "commit", "-qm", "start")
    Lab(lab).run(report=lambda line: None)


def test_adopt_rewrites_a_hydra_zen_literal_and_names_the_one_it_cannot(make_lab):
    lab = make_lab(trial_extra=ZEN_KNOBS, max_trials=1, baseline_repeats=1)
    (lab / "train.py").write_text(ZEN_APP)
    (lab / ".gitignore").write_text("outputs/\n")  # Hydra's run folders, when run by hand
    without_boost(lab)
    replayed(lab, {"rationale": "a faster optimiser, a wider net",
                   "params": {"optim.lr": 0.9, "width": 64}})  # fmt: skip
    baseline = json.loads(rows(lab, "SELECT params FROM trials WHERE id = 1")[0]["params"])
    assert baseline == {"optim.lr": 0.5, "width": 32}  # both from the hydra-zen config
    assert "score=1.0" in by_hand(lab)  # 0.5 + 32/64
    out = cli("adopt", str(lab), "2").stdout
    code = (lab / "train.py").read_text()
    assert 'make_config(lr=0.9, name="adam")  # the optimiser' in code
    assert "width=BASE * 2" in code  # not a literal: left as it is, and said
    assert "optim.lr: the project's default rewritten at train.py:5" in out
    assert "width: NOT carried into the project's code" in out and "not a literal" in out
    assert "set width = 64 there by hand" in out
    toml = (lab / "nightlab.toml").read_text()
    assert 'default = 64' in toml  # nightlab.toml carries what the code could not
    assert "default = 0.9" not in toml  # the config holds it: nightlab.toml still leaves it out
    assert "score=1.4" in by_hand(lab)  # 0.9 + 32/64: the trial's code still runs
    assert git(lab, "status", "--porcelain") == ""
    assert git(lab, "log", "--format=%s").startswith("nightlab: adopt trial 2")


def test_adopt_rewrites_nightlab_params_defaults(make_lab):
    knobs_toml = "\n[search.lr]\nlow = 0.0\nhigh = 2.0\ndefault = 1.0\n"
    lab = adopted_night(make_lab, PARAMS_APP, {"params": {"boost": 1.5, "lr": 0.25}},
                        toml_extra=knobs_toml)  # fmt: skip
    done = Lab(lab).adopt(2)
    assert done["carried"] == {"boost": "train.py:5"}
    assert "not a literal" in done["not_carried"]["lr"]
    assert "nightlab.params(boost=1.5, lr=BASE * 2)" in (lab / "train.py").read_text()
    assert "score=2.5" in by_hand(lab)
    assert git(lab, "status", "--porcelain") == ""


def test_adopt_rewrites_the_hydra_yaml_config_not_through_a_link(make_lab):
    from test_hydra_defaults import APP, CONF, KNOBS, hydra_lab

    lab = hydra_lab(make_lab, knobs=KNOBS)
    outside = lab.parent / "outside.yaml"  # a tracked link out of the lab: never written
    outside.write_text(CONF)
    (lab / "conf" / "elsewhere.yaml").symlink_to(outside)
    replayed(lab, {"rationale": "a wider net, a faster optimiser",
                   "params": {"model.width": 64, "optim.lr": 0.75}})  # fmt: skip
    done = Lab(lab).adopt(2)
    conf = (lab / "conf" / "config.yaml").read_text()
    assert conf == CONF.replace("width: 32", "width: 64").replace("lr: 0.5", "lr: 0.75")
    assert set(done["carried"]) == {"model.width", "optim.lr"} and not done["not_carried"]
    toml = (lab / "nightlab.toml").read_text()
    assert "default = 0.75" in toml  # declared there: rewritten there too
    assert '[search."model.width"]\nchoices = [16, 32, 64]\n\n' in toml  # left out: still
    assert (lab / "train.py").read_text() == APP
    assert outside.read_text() == CONF


GROUPS_APP = """
from hydra_zen import make_config, store, zen

BASE_LR = 0.01
store(make_config(lr=BASE_LR, name="adam"), group="optim", name="adam")
store(make_config(lr=0.01, momentum=0.9), group="optim", name="sgd")  # not selected
Config = make_config(hydra_defaults=["_self_", {"optim": "adam"}], optim=None)


def train(optim):
    print(f"score={optim.lr * 10}", flush=True)


if __name__ == "__main__":
    store(Config, name="config")
    store.add_to_hydra_store()
    zen(train).hydra_main(config_name="config", config_path=None, version_base="1.3")
"""


def test_adopt_never_rewrites_a_literal_the_app_does_not_compose(make_lab):
    """The selected optimiser's lr is not a literal; an unselected one's holds the same
    value. Rewriting that one would change nothing the app runs: adopt checks the rewrite
    against the composed config (in a sealed copy), leaves the code alone, says so, and
    nightlab.toml carries the value."""
    knobs = 'params = "hydra"\n\n[search."optim.lr"]\nlow = 0.0\nhigh = 1.0\n'
    lab = make_lab(trial_extra=knobs, max_trials=1, baseline_repeats=1)
    (lab / "train.py").write_text(GROUPS_APP)
    (lab / ".gitignore").write_text("outputs/\n")
    without_boost(lab)
    replayed(lab, {"rationale": "a faster optimiser", "params": {"optim.lr": 0.5}})
    out = cli("adopt", str(lab), "2").stdout
    assert (lab / "train.py").read_text() == GROUPS_APP
    assert "optim.lr: NOT carried into the project's code" in out
    assert "would not change the project's composed config" in out
    assert "set optim.lr = 0.5 there by hand" in out
    assert "default = 0.5" in (lab / "nightlab.toml").read_text()
    assert not list((lab / ".nightlab").glob("adopt-*"))  # the sealed copy is gone
    assert git(lab, "status", "--porcelain") == ""


def test_the_check_of_a_rewrite_runs_the_trials_code_sealed(make_lab):
    """The check runs code an agent wrote: a trial whose config read tries to write into
    the lab (its nightlab.toml, its store folder) reaches neither; the rewrite is still
    checked and carried."""
    lab = make_lab(trial_extra=ZEN_KNOBS, max_trials=1, baseline_repeats=1)
    (lab / "train.py").write_text(ZEN_APP)
    (lab / ".gitignore").write_text("outputs/\n")
    without_boost(lab)
    escape = (
        "import sys\n"
        "if '--cfg' in sys.argv:\n"
        f"    for name in ({str(lab / 'nightlab.toml')!r}, {str(lab / '.nightlab' / 'x')!r}):\n"
        "        try:\n"
        "            open(name, 'a').write('# escaped\\n')\n"
        "        except OSError:\n"
        "            pass\n"
    )
    edit = {"file": "train.py", "search": "BASE = 16\n", "replace": "BASE = 16\n" + escape}
    replayed(lab, {"rationale": "a faster optimiser", "params": {"optim.lr": 0.9},
                   "edits": [edit]})  # fmt: skip
    done = Lab(lab).adopt(2)
    assert done["carried"] == {"optim.lr": "train.py:12"}
    assert 'make_config(lr=0.9, name="adam")' in (lab / "train.py").read_text()
    assert "# escaped" not in (lab / "nightlab.toml").read_text()
    assert not (lab / ".nightlab" / "x").exists()


def checked_night(make_lab, escape: str) -> Path:
    """A night whose trial 2 carries `escape` (run when its code prints its config)."""
    lab = make_lab(trial_extra=ZEN_KNOBS, max_trials=1, baseline_repeats=1)
    (lab / "train.py").write_text(ZEN_APP)
    (lab / ".gitignore").write_text("outputs/\n")
    without_boost(lab)
    code = f"import os, sys\nif '--cfg' in sys.argv:\n    {escape}\n"
    edit = {"file": "train.py", "search": "BASE = 16\n", "replace": "BASE = 16\n" + code}
    replayed(lab, {"rationale": "a faster optimiser", "params": {"optim.lr": 0.9},
                   "edits": [edit]})  # fmt: skip
    return lab


def test_a_check_that_leaves_fifos_and_locked_folders_neither_hangs_nor_stays(make_lab):
    """The trial's code swaps the files its config is read from for FIFOs (the host would
    wait on them for ever) and leaves a folder it cannot be emptied of: adopt still ends,
    and its sealed copy is gone."""
    lab = checked_night(make_lab, "import glob; [(os.unlink(f), os.mkfifo(f)) for f in glob."
                        "glob(os.environ['NIGHTLAB_LAB_DIR'] + '/nightlab-cfg-*/std*')]; "
                        "os.makedirs('trap/in'); os.chmod('trap', 0o500)")  # fmt: skip
    out = cli("adopt", str(lab), "2", timeout=90).stdout
    assert "optim.lr: NOT carried into the project's code" in out
    assert "default = 0.9" in (lab / "nightlab.toml").read_text()  # carried there instead
    assert not list((lab / ".nightlab").glob("adopt-*"))


def test_the_check_of_a_rewrite_does_not_show_credentials(make_lab, monkeypatch):
    """A trial never sees the user's credentials; nor does its code when adopt checks it
    (what it prints lands in adopt's answer and the record)."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(dir="/var/tmp"))  # not under /tmp: every box has its own
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = HUSH-HUSH\n")
    secret = str(home / ".aws" / "credentials")
    lab = checked_night(make_lab, f"sys.exit(open({secret!r}).read())")
    monkeypatch.setenv("HOME", str(home))
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@t")
    try:
        done = Lab(lab).adopt(2)
    finally:
        shutil.rmtree(home)
    assert "HUSH-HUSH" not in json.dumps(done)
    assert "could not be checked" in done["not_carried"]["optim.lr"]
    assert "HUSH-HUSH" not in "".join(r["data"] for r in rows(lab, "SELECT data FROM events"))


def test_what_a_checked_config_gives_is_said_in_a_bounded_line(make_lab):
    """The value the trial's code composes is its to choose: a huge one is cut in adopt's
    answer and in the record, not copied whole."""
    lab = checked_night(make_lab, "print('optim:\\n  lr: ' + 'x' * 100000); sys.exit(0)")
    done = Lab(lab).adopt(2)
    assert "would not change the project's composed config" in done["not_carried"]["optim.lr"]
    assert len(done["not_carried"]["optim.lr"]) < 1000
    assert max(len(r["data"]) for r in rows(lab, "SELECT data FROM events")) < 20000
