"""Auto-repair (`nightlab.trials.repair.recover`): what a failed trial's log asks for, and real
repairs — pip from PyPI, a git clone at a ref, and a night whose first baseline trial lacks a
module, is repaired and runs again."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nightlab import Lab
from nightlab.config import Config
from nightlab.trials.repair import Retry, missing_module, model_params, recover

from conftest import git, make_config, rows, spawn_loop, try_rows, wait_until

FIXTURES = Path(__file__).parent / "repair_fixtures"
TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 3, in <module>
    import {module}
ModuleNotFoundError: No module named '{module}'
"""


class Events(list):
    """The `log` recover writes to: a list of {"kind": ..., **data}."""

    def __call__(self, kind: str, **data: Any) -> None:
        json.dumps(data)  # every event must be storable
        self.append({"kind": kind, **data})


def make_cfg(**repair: Any) -> Config:
    return make_config(repair=repair)


def failed_trial(
    tmp_path: Path,
    stderr: str,
    params: Any = None,
    *,
    tid: int = 1,
    log_tail: str | None = None,
    started_at: float | None = None,
) -> tuple[Path, Path, SimpleNamespace, SimpleNamespace]:
    """(lab, state, trial, outcome) of a failed trial whose stderr.log holds `stderr`."""
    lab, state = tmp_path / "lab", tmp_path / "lab" / ".nightlab"
    folder = state / "trials" / str(tid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stderr.log").write_text(stderr)
    trial = SimpleNamespace(
        id=tid,
        params={"lr": 0.1} if params is None else params,
        status="failed",
        reason="exit code 1",
        kind="trial",
        commit="abc",
        seed=0,
        started_at=started_at,
    )
    outcome = SimpleNamespace(status="failed", exit_code=1, log_tail=log_tail, reason="exit 1")
    return lab, state, trial, outcome


def run_recover(
    cfg: Config, tmp_path: Path, stderr: str, params: Any = None, **kw: Any
) -> tuple[Retry | None, Events, Path]:
    lab, state, trial, outcome = failed_trial(tmp_path, stderr, params, **kw)
    events = Events()
    return recover(cfg, lab, state, trial, outcome, events), events, state


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A stand-in interpreter that records its arguments and succeeds: the choice of what
    to install, without installing (real pip runs in the tests further down)."""
    record = tmp_path / "argv.txt"
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{record}"\n')
    python.chmod(0o755)
    return str(python), record


def make_venv(root: Path) -> Path:
    """A throwaway training environment at `root`; its interpreter."""
    python = root / "bin" / "python"
    # fast (0.1 s): the base interpreter's pip through --system-site-packages
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
        capture_output=True,
    )
    pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
    if made.returncode != 0 or pip.returncode != 0:  # no pip there: a venv with its own
        shutil.rmtree(root, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(root)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot create a venv: {made.stderr.decode()[-300:]}")
    return python


@pytest.fixture(scope="module")
def train_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training environment shared by this module's tests (each installs its own module)."""
    return make_venv(tmp_path_factory.mktemp("train-env") / "venv")


def imports(python: Path, module: str, cwd: Path) -> str | None:
    """Where `module` is imported from in that interpreter, or None."""
    proc = subprocess.run(
        [python, "-c", f"import {module}; print({module}.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def tiny_package(folder: Path, dist: str, module: str, body: str) -> Path:
    """A local package pip builds offline (tests/repair_fixtures/tiny_backend.py)."""
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(body)
    shutil.copy(FIXTURES / "tiny_backend.py", folder)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\nbackend-path = ["."]\n'
        f'[project]\nname = "{dist}"\nversion = "1.0"\n'
    )
    return folder


# ---------------------------------------------------------------------- reading the log
def test_missing_module_is_the_last_import_that_failed() -> None:
    log = TRACEBACK.format(module="first") + TRACEBACK.format(module="pkg.sub.mod")
    assert missing_module([log]) == "pkg.sub.mod"
    assert missing_module(["", 'ImportError: No module named "yaml"']) == "yaml"
    assert missing_module(["boom", "--- stderr.log ---\n" + TRACEBACK.format(module="x")]) == "x"
    assert missing_module(["ValueError: bad lr"]) is None


def test_model_params_rank_the_usual_keys_first() -> None:
    params = {"enc_name": "r18", "model": "m", "model.name": "a", "cfg": {"model_name": "b"}}
    keys = [".".join(path) for path, _ in model_params(params)]
    assert keys == ["model.name", "model", "enc_name", "cfg.model_name"]
    assert [v for _, v in model_params({"lr": 0.1, "name": 3, "run_name": None})] == []


# ---------------------------------------------------------------------- choosing the install
@pytest.mark.parametrize(
    ("repair", "missing", "argv", "requirement", "source"),
    [
        (  # the package map wins over every other way
            {
                "module_package_map": {"cv2": "opencv-python-headless==4.9"},
                "module_alias_map": {"cv2": "other"},
                "module_clone_map": {"cv2": {"repo": "https://example.invalid/cv2.git"}},
                "allow_direct_module_install": True,
            },
            "cv2",
            "opencv-python-headless==4.9",
            "opencv-python-headless==4.9",
            "module_package_map",
        ),
        (  # an alias goes through the package map again
            {
                "module_alias_map": {"mmcv": "mmcv_full"},
                "module_package_map": {"mmcv_full": "mmcv-full<2"},
            },
            "mmcv.ops",
            "mmcv-full<2",
            "mmcv-full<2",
            "module_alias_map",
        ),
        ({"module_alias_map": {"foo": "foo2"}}, "foo", "foo2", "foo2", "module_alias_map"),
        (  # the longest mapped prefix of a dotted module
            {"module_package_map": {"a.b": "pkg-ab", "a": "pkg-a"}},
            "a.b.c",
            "pkg-ab",
            "pkg-ab",
            "module_package_map",
        ),
        (  # a guessed name: wheels only, no build code runs
            {"allow_direct_module_install": True},
            "einops",
            "--only-binary :all: einops",
            "einops",
            "direct",
        ),
        (
            {"allow_direct_module_install": True},
            "sklearn.metrics",
            "--only-binary :all: scikit-learn",
            "scikit-learn",
            "direct",
        ),
        (  # a requirement with pip options is split into arguments
            {"module_package_map": {"torch": "torch==2.3 --index-url https://x.invalid/cpu"}},
            "torch",
            "torch==2.3 --index-url https://x.invalid/cpu",
            "torch==2.3 --index-url https://x.invalid/cpu",
            "module_package_map",
        ),
    ],
)
def test_choice_of_what_to_install(
    tmp_path, recorder, repair, missing, argv, requirement, source
) -> None:
    python, record = recorder
    cfg = make_cfg(python=python, **repair)
    retry, events, state = run_recover(cfg, tmp_path, TRACEBACK.format(module=missing))

    top = missing.split(".")[0]
    assert record.read_text() == f"-m pip install --disable-pip-version-check -q {argv}\n"
    assert retry == Retry({"lr": 0.1}, note=f"installed {requirement} for module {top}")
    (event,) = events
    assert event["kind"] == "auto_repair" and event["action"] == "install" and event["ok"]
    assert event["module"] == top and event["missing"] == missing and event["source"] == source
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    assert shlex.split(event["command"]) == [*pip, *argv.split()]
    assert event["exit_code"] == 0 and event["python"] == python
    ledger = json.loads((state / "repair" / "ledger.json").read_text())
    assert [(e["module"], e["requirement"], e["ok"]) for e in ledger["installs"]] == [
        (top, requirement, True)
    ]


def test_nothing_configured_says_which_key_to_set(tmp_path, recorder) -> None:
    python, record = recorder
    retry, events, state = run_recover(
        make_cfg(python=python), tmp_path, TRACEBACK.format(module="einops.layers")
    )
    assert retry is None and not record.exists()
    (event,) = events
    assert event["action"] == "none" and event["ok"] is False and event["module"] == "einops"
    assert '[repair] module_package_map = {einops = "<pip requirement>"}' in event["message"]
    assert "allow_direct_module_install = true" in event["message"]
    assert not (state / "repair").exists()


def test_direct_install_never_guesses_a_module_the_lab_holds(tmp_path, recorder) -> None:
    python, record = recorder
    (tmp_path / "lab" / "models").mkdir(parents=True)
    cfg = make_cfg(python=python, allow_direct_module_install=True)
    retry, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="models.unet"))
    assert retry is None and not record.exists()
    assert events[0]["action"] == "none" and "import path problem" in events[0]["message"]


def test_the_ledger_never_installs_twice(tmp_path, recorder) -> None:
    python, record = recorder
    cfg = make_cfg(python=python, module_package_map={"foo": "foo-pkg", "bar": "foo-pkg"})
    first, _, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="foo"), started_at=1.0)
    assert first is not None and record.read_text().count("\n") == 1

    # a trial that started before the install landed failed for want of it: retry, no pip
    early, events, _ = run_recover(
        cfg, tmp_path, TRACEBACK.format(module="foo"), tid=2, started_at=2.0
    )
    assert early == Retry({"lr": 0.1}, note="module foo was installed (foo-pkg) while this ran")
    assert events[0]["ok"] and events[0]["installed_for_trial"] == 1

    # the same module missing in a later trial: the install did not help
    later, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="foo"), tid=3)
    assert later is None and events[0]["not_helped"] is True
    assert "did not help" in events[0]["message"] and "ledger.json" in events[0]["message"]

    # another module mapped to the same requirement: not installed twice either
    other, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="bar"), tid=4)
    assert other is None and "already installed" in events[0]["message"]
    assert record.read_text().count("\n") == 1

    # the mapping changed since: the new requirement is tried
    cfg = make_cfg(python=python, module_package_map={"foo": "foo-pkg>=2"})
    fixed, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="foo"), tid=5)
    assert fixed is not None and fixed.note == "installed foo-pkg>=2 for module foo"
    assert record.read_text().count("\n") == 2


def test_a_missing_interpreter_installs_nothing(tmp_path) -> None:
    cfg = make_cfg(
        python=str(tmp_path / "no-venv" / "bin" / "python"), module_package_map={"x": "x"}
    )
    retry, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="x"))
    assert retry is None and "not an executable interpreter" in events[0]["message"]


# ---------------------------------------------------------------------- model fallback
UNSUPPORTED = "Traceback ...\nValueError: Unsupported model.name: {name}\n"


@pytest.mark.parametrize(
    ("params", "patched"),
    [
        ({"model.name": "unet_resnet34", "lr": 0.1}, {"model.name": "unet", "lr": 0.1}),
        ({"model_name": "unet_resnet34"}, {"model_name": "unet"}),
        ({"model": "unet_resnet34"}, {"model": "unet"}),
        ({"arch_name": "unet_resnet34"}, {"arch_name": "unet"}),
        ({"model": {"name": "unet_resnet34", "depth": 3}}, {"model": {"name": "unet", "depth": 3}}),
    ],
)
def test_unsupported_model_retries_with_the_fallback(tmp_path, params, patched) -> None:
    cfg = make_cfg(model_fallback_map={"unet_resnet34": "unet"})
    original = json.loads(json.dumps(params))
    retry, events, state = run_recover(
        cfg, tmp_path, UNSUPPORTED.format(name="unet_resnet34"), params, tid=7
    )
    note = "model unet_resnet34 unsupported: retry with unet"
    assert retry == Retry(patched, note=note)
    assert params == original  # the trial's own parameters are left as they were
    written = state / "autofix_configs" / "7.json"
    assert json.loads(written.read_text()) == patched
    (event,) = events
    assert event["action"] == "model_fallback" and event["ok"] and event["message"] == note
    assert event["model"] == "unet_resnet34" and event["fallback"] == "unet"
    assert event["config"] == str(written) and "Unsupported model.name" in event["log_line"]


def test_the_model_named_in_the_log_is_the_one_patched(tmp_path) -> None:
    cfg = make_cfg(model_fallback_map={"a": "a2", "resnet999": "resnet50"})
    params = {"model.name": "a", "backbone_name": "resnet999"}
    retry, events, _ = run_recover(cfg, tmp_path, UNSUPPORTED.format(name="resnet999"), params)
    assert retry is not None and retry.params == {"model.name": "a", "backbone_name": "resnet50"}
    assert events[0]["param"] == "backbone_name"
    # the log names a model without a fallback: no patching of another one
    params = {"model.name": "a", "backbone_name": "vit"}
    retry, events, _ = run_recover(cfg, tmp_path, UNSUPPORTED.format(name="vit"), params, tid=2)
    assert retry is None and events[0]["model"] == "vit"
    assert events[0]["log_line"] == "ValueError: Unsupported model.name: vit"
    # a full stop ends the name; a word after the pattern that is no model name is ignored
    stderr = "Unsupported model.name: resnet999.\n"
    params = {"model.name": "a", "backbone_name": "resnet999"}
    retry, _, _ = run_recover(cfg, tmp_path, stderr, params, tid=4)
    assert retry is not None and retry.params["backbone_name"] == "resnet50"
    stderr = "Unsupported model.name for this task: see the docs.\n"
    retry, _, _ = run_recover(cfg, tmp_path, stderr, {"model.name": "a"}, tid=3)
    assert retry is not None and retry.params == {"model.name": "a2"}
    assert '[repair] model_fallback_map = {vit = "<a supported model>"}' in events[0]["message"]


def test_a_fallback_wins_over_an_install(tmp_path, recorder) -> None:
    python, record = recorder
    cfg = make_cfg(
        python=python,
        module_package_map={"segmentation_models_pytorch": "segmentation-models-pytorch"},
        model_fallback_map={"unet_resnet34": "simple_cnn"},
        unsupported_model_patterns=[r"Unknown architecture \w+", "Unsupported model.name"],
    )
    stderr = (
        TRACEBACK.format(module="segmentation_models_pytorch")
        + "During handling...\nKeyError: Unknown architecture unet_resnet34 (no smp)\n"
    )
    retry, events, _ = run_recover(cfg, tmp_path, stderr, {"model": "unet_resnet34"})
    assert retry == Retry(
        {"model": "simple_cnn"}, note="model unet_resnet34 unsupported: retry with simple_cnn"
    )
    assert not record.exists()  # nothing installed
    (event,) = events
    assert event["also_missing_module"] == "segmentation_models_pytorch"


def test_unsupported_without_a_fallback_falls_through_to_the_install(tmp_path, recorder) -> None:
    python, record = recorder
    cfg = make_cfg(python=python, module_package_map={"timm": "timm"})
    stderr = "Unsupported model.name for this task\n" + TRACEBACK.format(module="timm")
    retry, events, _ = run_recover(cfg, tmp_path, stderr, {"model_name": "vit_h"})
    assert retry is not None and retry.note == "installed timm for module timm"
    assert [e["action"] for e in events] == ["model_fallback", "install"]
    assert events[0]["ok"] is False and "vit_h" in events[0]["message"]


# ---------------------------------------------------------------------- nothing to do
def test_other_failures_are_left_to_the_worker(tmp_path) -> None:
    cfg = make_cfg(allow_direct_module_install=True, model_fallback_map={"a": "b"})
    retry, events, _ = run_recover(cfg, tmp_path, "RuntimeError: CUDA out of memory\n")
    assert retry is None and events == []
    lab, state, trial, outcome = failed_trial(tmp_path, TRACEBACK.format(module="x"))
    outcome.status = "timeout"
    assert recover(cfg, lab, state, trial, outcome, events) is None and events == []
    assert recover(make_cfg(enabled=False), lab, state, trial, outcome, events) is None


def test_the_outcome_tail_is_read_when_stderr_is_empty(tmp_path, recorder) -> None:
    python, _ = recorder
    cfg = make_cfg(python=python, module_package_map={"x": "x-pkg"})
    tail = "--- stdout.log (last 3 lines) ---\n" + TRACEBACK.format(module="x")
    retry, _, _ = run_recover(cfg, tmp_path, "", log_tail=tail)
    assert retry is not None and retry.note == "installed x-pkg for module x"


def test_recover_never_raises(tmp_path) -> None:
    cfg = make_cfg(model_fallback_map={"a": "b"})
    retry, events, _ = run_recover(cfg, tmp_path, UNSUPPORTED.format(name="a"), params=42)
    assert retry is None
    (event,) = events
    assert event["action"] == "error" and event["ok"] is False
    assert event["error"].startswith("AttributeError") and "Traceback" in event["traceback"]

    def broken_log(kind: str, **data: Any) -> None:
        raise OSError("the store is gone")

    lab, state, trial, outcome = failed_trial(
        tmp_path, UNSUPPORTED.format(name="a"), {"model": "a"}
    )
    assert recover(cfg, lab, state, trial, outcome, broken_log) is None


# ---------------------------------------------------------------------- real pip
def test_a_failed_install_is_recorded_and_not_tried_again(tmp_path, train_venv) -> None:
    missing = tmp_path / "no-such-package"
    cfg = make_cfg(python=str(train_venv), module_package_map={"ghost": str(missing)})
    retry, events, state = run_recover(cfg, tmp_path, TRACEBACK.format(module="ghost"))
    assert retry is None
    (event,) = events
    assert event["action"] == "install" and event["ok"] is False and event["exit_code"] != 0
    assert event["message"] == f"installing {missing} for module ghost failed"
    assert str(missing) in event["output_tail"]  # pip's own words about it
    again, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module="ghost"), tid=2)
    assert again is None and "already failed to install" in events[0]["message"]
    assert "command" not in events[0]  # pip did not run again
    ledger = json.loads((state / "repair" / "ledger.json").read_text())
    assert len(ledger["installs"]) == 1


@pytest.mark.slow
def test_a_real_install_from_pypi(tmp_path, train_venv) -> None:
    """pip installs a small pure-Python package from PyPI into the training venv."""
    module = next(
        (m for m in ("tomli", "pyjokes", "text_unidecode") if not imports(train_venv, m, tmp_path)),
        None,
    )
    if module is None:
        pytest.skip("the training venv already has every candidate package")
    cfg = make_cfg(python=str(train_venv), allow_direct_module_install=True)
    retry, events, state = run_recover(cfg, tmp_path, TRACEBACK.format(module=module))

    assert events[0]["ok"], events[0]
    assert retry == Retry({"lr": 0.1}, note=f"installed {module} for module {module}")
    assert events[0]["source"] == "direct" and events[0]["seconds"] > 0
    assert imports(train_venv, module, tmp_path) is not None
    # the same module missing again: the ledger says the install did not help, no pip
    again, events, _ = run_recover(cfg, tmp_path, TRACEBACK.format(module=module), tid=2)
    assert again is None and events[0]["not_helped"] and "command" not in events[0]
    assert len(json.loads((state / "repair" / "ledger.json").read_text())["installs"]) == 1


@pytest.mark.slow
def test_a_clone_install_at_a_ref_and_subdir(tmp_path, train_venv) -> None:
    repo = tmp_path / "origin"
    tiny_package(repo / "python", "nightlab-clone-demo", "nightlab_clone_demo", 'VALUE = "v1"\n')
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    (repo / "python" / "nightlab_clone_demo" / "__init__.py").write_text('VALUE = "v2"\n')
    git(repo, "commit", "-qam", "v2")

    spec = {"repo": str(repo), "ref": "v1", "subdir": "python", "editable": True}
    cfg = make_cfg(python=str(train_venv), module_clone_map={"nightlab_clone_demo": spec})
    retry, events, state = run_recover(
        cfg, tmp_path, TRACEBACK.format(module="nightlab_clone_demo")
    )

    (event,) = events
    assert event["ok"], event
    requirement = f"{repo}@v1#subdirectory=python"
    assert retry == Retry(
        {"lr": 0.1}, note=f"installed {requirement} for module nightlab_clone_demo"
    )
    clone = state / "repair" / "clones" / "nightlab_clone_demo"
    assert [s["command"].split()[:3] for s in event["steps"]] == [
        ["git", "clone", "--quiet"],
        ["git", "-C", str(clone)],
        [str(train_venv), "-m", "pip"],
    ]
    assert event["command"].endswith(f"-q -e {clone / 'python'}")
    where = imports(train_venv, "nightlab_clone_demo", tmp_path)
    assert where == str(clone / "python" / "nightlab_clone_demo" / "__init__.py")  # editable
    value = subprocess.run(
        [train_venv, "-c", "import nightlab_clone_demo as m; print(m.VALUE)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert value == "v1"  # the ref, not the branch's head


# ---------------------------------------------------------------------- through the loop
TRAIN = """
import json, os
import nightlab_missing_demo_mod
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
score = 1.0 + p.get("boost", 0.0) + nightlab_missing_demo_mod.BONUS + 0.01 * ((seed * 7) % 3 - 1)
print(f"score={score}", flush=True)
"""


@pytest.mark.slow
def test_a_night_repairs_its_baseline_and_carries_on(tmp_path, make_lab) -> None:
    package = tiny_package(
        tmp_path / "demo-mod",
        "nightlab-missing-demo-mod",
        "nightlab_missing_demo_mod",
        "BONUS = 0.5\n",
    )
    lab = make_lab(max_trials=5)
    # the training venv inside the lab (git-ignored), where any sandbox lets the trial see it
    train_venv = make_venv(lab / "train-venv")
    (lab / ".gitignore").write_text("train-venv/\n")
    (lab / "train.py").write_text(TRAIN)
    toml = (lab / "nightlab.toml").read_text()
    toml = toml.replace('command = "python train.py"', f'command = "{train_venv} train.py"')
    toml += (
        f'\n[repair]\npython = "{train_venv}"\n'
        f'module_package_map = {{nightlab_missing_demo_mod = "{package}"}}\n'
    )
    (lab / "nightlab.toml").write_text(toml)
    lines: list[str] = []

    final = Lab(lab).run(report=lines.append)

    trials = rows(lab, "SELECT id, kind, status, verdict, seed, objective FROM trials ORDER BY id")
    assert [(t["kind"], t["status"]) for t in trials] == [
        ("baseline", "failed"),
        ("baseline", "succeeded"),  # the retry
        ("baseline", "succeeded"),
        ("baseline", "succeeded"),
        ("trial", "succeeded"),
    ], lines
    assert trials[1]["seed"] == trials[0]["seed"] == 0 and [t["seed"] for t in trials[2:4]] == [
        1,
        2,
    ]
    stderr = (lab / ".nightlab" / "trials" / "1" / "stderr.log").read_text()
    assert "No module named 'nightlab_missing_demo_mod'" in stderr

    events = rows(lab, "SELECT trial_id, kind, data FROM events WHERE kind IN "
                       "('auto_repair', 'run_outcome_retry') ORDER BY id")  # fmt: skip
    assert [(e["trial_id"], e["kind"]) for e in events] == [
        (1, "auto_repair"),
        (2, "run_outcome_retry"),
    ]
    repair, retry = (json.loads(e["data"]) for e in events)
    note = f"installed {package} for module nightlab_missing_demo_mod"
    assert repair["ok"] and repair["action"] == "install" and repair["message"] == note
    assert retry["retry_of"] == 1 and retry["note"] == note
    assert any(line.startswith(f"auto-repair: {note}; trial 1 runs again") for line in lines)

    assert final["state"] == "finished" and final["end_reason"] == "max_trials=5 reached"
    assert final["baseline"]["n"] == 3  # the retry counts, the failure does not
    assert final["baseline"]["sigma"] == pytest.approx(0.01)
    assert [t["verdict"] for t in trials[1:4]] == ["baseline"] * 3
    assert trials[1]["objective"] == pytest.approx(1.49)


FALLBACK_TRAIN = """
import json, os, sys
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
if p["model_name"] == "unet_resnet34":
    sys.exit("ValueError: Unsupported model.name: unet_resnet34")
print(f"score={1.0 + 0.01 * ((int(os.environ['NIGHTLAB_SEED']) * 7) % 3 - 1)}", flush=True)
"""


@pytest.mark.slow
def test_a_night_retries_an_unsupported_model_with_its_fallback(make_lab) -> None:
    lab = make_lab(max_trials=6)
    (lab / "train.py").write_text(FALLBACK_TRAIN)
    with (lab / "nightlab.toml").open("a") as fh:
        fh.write(
            '\n[search.model_name]\nchoices = ["unet_resnet34", "simple_cnn"]\n'
            'default = "unet_resnet34"\n'
            '\n[repair]\nmodel_fallback_map = {unet_resnet34 = "simple_cnn"}\n'
        )
    lines: list[str] = []

    final = Lab(lab).run(report=lines.append)

    trials = rows(lab, "SELECT id, status, params FROM trials ORDER BY id")
    # each baseline repeat runs the unsupported default, and each is retried with the fallback
    assert [(t["status"], json.loads(t["params"])["model_name"]) for t in trials] == [
        ("failed", "unet_resnet34"),
        ("succeeded", "simple_cnn"),
    ] * 3, lines
    for failed in (1, 3, 5):
        patched = lab / ".nightlab" / "autofix_configs" / f"{failed}.json"
        assert json.loads(patched.read_text())["model_name"] == "simple_cnn"
    events = rows(lab, "SELECT trial_id, data FROM events WHERE kind = 'run_outcome_retry'")
    assert [(e["trial_id"], json.loads(e["data"])["retry_of"]) for e in events] == [
        (2, 1),
        (4, 3),
        (6, 5),
    ]
    assert final["baseline"]["n"] == 3 and final["end_reason"] == "max_trials=6 reached"


SLOW_PIP = "#!/bin/sh\nsleep 4\necho 'ERROR: no index here' >&2\nexit 1\n"

IMPORTS_ON_CRASH = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
if p["mode"] == "crash":
    import nightlab_nope_mod  # fails: auto-repair tries to install it
if p["mode"] == "hang":
    time.sleep(600)
print(f"score={1.0 + 0.01 * ((int(os.environ['NIGHTLAB_SEED']) * 7) % 3 - 1)}", flush=True)
"""


@pytest.mark.slow
def test_a_slow_repair_leaves_the_other_slots_watched(tmp_path, make_lab) -> None:
    """pip takes 4 s for one failed trial; the trial hanging in the other slot is still cut
    at its 1 s budget (a repair on the loop's thread would hold it ~4 s)."""
    slow = tmp_path / "slow-python"
    slow.write_text(SLOW_PIP)
    slow.chmod(0o755)
    decisions = [
        {"action": "run", "rationale": "a module the lab lacks", "params": {"mode": "crash"}},
        {"action": "run", "rationale": "a trial that hangs", "params": {"mode": "hang"}},
    ] + [
        {"action": "run", "rationale": f"a small boost, number {i}", "params": {"boost": i / 100}}
        for i in range(1, 5)
    ]  # more than max_trials allows: none of them may start while the repair runs
    lab = make_lab(decisions=decisions, max_trials=6, budget=1)
    (lab / "train.py").write_text(IMPORTS_ON_CRASH)
    with (lab / "nightlab.toml").open("a") as fh:
        fh.write(f'\n[executor]\nslots = 2\n\n[repair]\npython = "{slow}"\n'
                 'module_package_map = {nightlab_nope_mod = "nightlab-nope-mod"}\n')  # fmt: skip
    Lab(lab).run(report=lambda line: None)

    trials = rows(lab, "SELECT id, status, wall_s, params FROM trials WHERE kind='trial' "
                       "ORDER BY id")  # fmt: skip
    by_mode = {json.loads(t["params"])["mode"]: t for t in trials}
    assert by_mode["crash"]["status"] == "failed"
    assert by_mode["hang"]["status"] == "timeout"
    assert by_mode["hang"]["wall_s"] < 2.5, by_mode["hang"]["wall_s"]
    events = rows(lab, "SELECT trial_id, data FROM events WHERE kind='auto_repair'")
    assert [e["trial_id"] for e in events] == [by_mode["crash"]["id"]]
    assert json.loads(events[0]["data"])["ok"] is False  # the install failed, and says so
    assert rows(lab, "SELECT COUNT(*) FROM trials")[0][0] == 6  # max_trials held meanwhile


def test_a_repair_cut_short_by_a_dead_loop_is_done_again(tmp_path, make_lab) -> None:
    slow = tmp_path / "slow-python"
    slow.write_text(SLOW_PIP.replace("sleep 4", "sleep 30"))
    slow.chmod(0o755)
    decisions = [
        {"action": "run", "rationale": "a module the lab lacks", "params": {"mode": "crash"}}
    ]
    lab = make_lab(decisions=decisions, max_trials=4)
    (lab / "train.py").write_text(IMPORTS_ON_CRASH)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + f'\n[repair]\npython = "{slow}"\n'
                    'module_package_map = {nightlab_nope_mod = "nightlab-nope-mod"}\n')  # fmt: skip
    loop = spawn_loop(lab)
    started = "SELECT trial_id FROM events WHERE kind='repair_started'"
    assert wait_until(lambda: try_rows(lab, started), 60, proc=loop)
    os.killpg(loop.pid, signal.SIGKILL)  # the loop dies mid-install (its pip sleeps on)
    loop.wait()
    toml.write_text(toml.read_text().replace(str(slow), str(tmp_path / "fast-python")))
    fast = tmp_path / "fast-python"
    fast.write_text(SLOW_PIP.replace("sleep 4\n", ""))
    fast.chmod(0o755)
    Lab(lab).run(report=lambda line: None)

    events = rows(lab, "SELECT trial_id, kind FROM events WHERE kind IN ('repair_started', "
                       "'auto_repair', 'repair_done') ORDER BY id")  # fmt: skip
    kinds = [e["kind"] for e in events]
    assert kinds == ["repair_started", "repair_started", "auto_repair", "repair_done"], kinds
    assert len({e["trial_id"] for e in events}) == 1
