"""The lightning-hydra template: hydra-zen configs, strict validation, canonical folders
and plain state_dict checkpoints, and a real night of Lightning trials logging into their
own MLflow runs (real CPU training, no mocks)."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nightlab.config import load_config
from nightlab.lab import templates

from conftest import cli, git, rows, sigterm_timed, status

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "lightning-hydra"
TEMPLATE = Path(templates.__file__).parent / "lightning-hydra"  # what `nightlab init` copies
COPY_SKIP = shutil.ignore_patterns("outputs", "__pycache__", ".nightlab")


@pytest.fixture(scope="module")
def lh():
    """The example's package `digits_lh`, imported from examples/lightning-hydra."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from digits_lh import config, data, model, paths
    finally:
        sys.path.remove(str(EXAMPLE))
    return config, data, model, paths


@pytest.fixture
def clean_env(monkeypatch):
    """No nightlab or MLflow variables from the test's own environment."""
    for name in list(os.environ):
        if name.startswith(("NIGHTLAB_", "MLFLOW_")):
            monkeypatch.delenv(name)
    return monkeypatch


def example_copy(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=COPY_SKIP)
    return dest


def train(lab: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTLAB_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=lab,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_template_is_the_example_and_is_listed():
    from nightlab.lab.templates import names

    assert "lightning-hydra" in names()
    ours = {f for f in files(EXAMPLE) if not f.startswith("outputs")}
    assert ours == {f for f in files(TEMPLATE) if not f.startswith("outputs")}
    assert {"nightlab.toml", "IDEA.md", "train.py", ".gitignore", "digits_lh/paths.py"} <= ours
    for name in ours:
        assert filecmp.cmp(EXAMPLE / name, TEMPLATE / name, shallow=False), name


def test_knob_defaults_are_the_config_defaults(lh, clean_env):
    config = lh[0]
    cfg = load_config(EXAMPLE)
    assert cfg.trial.params == "hydra" and cfg.objective.test_metric == "test_acc"
    assert cfg.tracking.trial_run is True
    composed = config.compose_config()
    config.validate_config(composed)
    knobs = cfg.defaults()
    assert {"model.width", "optim.lr"} <= set(knobs)
    for path, default in knobs.items():
        node = composed
        for part in path.split("."):
            node = node[part]
        assert node == default, path
    assert composed.seed == 0 and composed.threads == 2
    assert composed.trainer.precision == "32-true"  # fp32 unless asked


@pytest.mark.parametrize(
    ("overrides", "key", "value"),
    [
        (["model.width=0"], "model.width", "0"),
        (["optim.lr=0"], "optim.lr", "0"),
        (["model.dropout=1.5"], "model.dropout", "1.5"),
        (["trainer.max_epochs=0"], "trainer.max_epochs", "0"),
        (["trainer.precision=8-bit"], "trainer.precision", "'8-bit'"),
        (["data.persistent_workers=true"], "data.persistent_workers", "True"),
        (["data.num_workers=-1"], "data.num_workers", "-1"),
        (["experiment=../elsewhere"], "experiment", "'../elsewhere'"),
    ],
)
def test_validate_config_names_key_value_and_fix(lh, clean_env, overrides, key, value):
    config = lh[0]
    with pytest.raises(ValueError) as err:
        config.validate_config(config.compose_config(overrides))
    message = str(err.value)
    assert f"{key}={value}" in message and "fix: pass" in message


def test_float16_on_cpu_and_unknown_keys_are_refused(lh, clean_env):
    import torch
    from hydra.errors import ConfigCompositionException

    config = lh[0]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"trainer.precision='16-mixed'.*bf16-mixed"):
            config.validate_config(config.compose_config(["trainer.precision=16-mixed"]))
    config.validate_config(config.compose_config(["trainer.precision=bf16-mixed"]))
    with pytest.raises(ConfigCompositionException, match="model.depth"):
        config.compose_config(["model.depth=3"])  # Hydra refuses keys that do not exist


def test_canonical_dir_grammar_and_required_artifacts(lh, clean_env, tmp_path):
    config, _, _, paths = lh
    clean_env.setenv("NIGHTLAB_SEED", "7")
    cfg = config.compose_config(["model.width=32", "optim.lr=0.0003"])
    assert cfg.seed == 7  # the seed is NIGHTLAB_SEED's
    expected = Path("digits") / "cnn-w32" / "lr0.0003-seed7"
    assert paths.canonical_experiment_dir(cfg, root=tmp_path) == tmp_path / expected
    assert paths.canonical_experiment_dir(cfg) == Path("outputs") / expected
    clean_env.setenv("NIGHTLAB_ARTIFACTS", str(tmp_path / "trial" / "out" / "artifacts"))
    assert paths.canonical_experiment_dir(cfg) == tmp_path / "trial/out/artifacts" / expected

    exp_dir = tmp_path / expected
    assert paths.required_artifacts(exp_dir) == {
        "config": exp_dir / "config.yaml",
        "checkpoint": exp_dir / "model.pt",
    }
    with pytest.raises(FileNotFoundError, match=r"missing config artifact: .*config\.yaml"):
        paths.check_artifacts(exp_dir)
    exp_dir.mkdir(parents=True)
    (exp_dir / "config.yaml").write_text("experiment: digits\n")
    (exp_dir / "model-best.pt").write_bytes(b"")  # a near miss is not picked up
    with pytest.raises(FileNotFoundError) as err:
        paths.load_model(exp_dir)
    assert "missing checkpoint artifact" in str(err.value)
    assert str(exp_dir / "model.pt") in str(err.value) and "python train.py" in str(err.value)


def test_the_test_split_is_held_out(lh, clean_env):
    data = lh[1].DigitsDataModule()
    with pytest.raises(RuntimeError, match="NIGHTLAB_TEST=1"):
        data.setup("test")
    data.setup("fit")
    sizes = {name: len(ds) for name, ds in data.datasets.items()}
    assert sizes == {"train": 1077, "val": 360}


@pytest.mark.slow
def test_plain_run_saves_a_state_dict_at_the_canonical_path_and_nothing_else(lh, tmp_path):
    import torch

    lab = example_copy(tmp_path / "lab")
    before = files(lab)
    proc = train(
        lab,
        "model.width=8",
        "optim.lr=0.003",
        "trainer.max_epochs=2",
        NIGHTLAB_SEED="1",
        NIGHTLAB_TEST="1",
    )
    assert proc.returncode == 0, proc.stderr
    # NightlabCallback's report, printed outside nightlab (step = the epoch)
    epoch_lines = re.findall(
        r"^step=(\d) train_loss=\S+ val_loss=\S+ val_acc=\S+$", proc.stdout, re.M
    )
    assert epoch_lines == ["1", "2"]
    assert re.search(r"^test_acc=0\.\d+$", proc.stdout, re.M)
    exp_dir = lab / "outputs" / "digits" / "cnn-w8" / "lr0.003-seed1"
    assert f"checkpoint: {Path('outputs/digits/cnn-w8/lr0.003-seed1/model.pt')}" in proc.stdout
    # Hydra and Lightning wrote nothing else: no outputs/<date>, .hydra, lightning_logs, mlruns
    assert files(lab) - before == {
        str((exp_dir / name).relative_to(lab)) for name in ("config.yaml", "model.pt")
    }
    state = torch.load(exp_dir / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["conv1.weight"].shape == (8, 1, 3, 3)
    lh[2].DigitsCNN(width=8).load_state_dict(state)  # strict: every key and shape
    net = lh[3].load_model(exp_dir)
    assert net.conv2.out_channels == 16


@pytest.mark.slow
def test_a_nan_loss_exits_3(tmp_path):
    lab = example_copy(tmp_path / "lab")
    model = lab / "digits_lh" / "model.py"
    line = "loss = F.cross_entropy(self(x), y)\n"
    assert line in model.read_text()
    nan = 'loss = F.cross_entropy(self(x), y) * float("nan")\n'
    model.write_text(model.read_text().replace(line, nan))
    proc = train(lab, "trainer.max_epochs=2")
    assert proc.returncode == 3
    assert "step=1 train_loss=nan" in proc.stdout and "step=2" not in proc.stdout
    assert "checkpoint:" not in proc.stdout


@pytest.mark.slow
def test_init_and_a_search_night_with_hydra_overrides_and_mlflow(lh, tmp_path):
    import torch

    lab = tmp_path / "lh"
    cli("init", str(lab), "--template", "lightning-hydra")
    toml = lab / "nightlab.toml"
    text = toml.read_text()
    text = text.replace("max_trials = 12", "max_trials = 3")
    # two epochs per trial keeps the night short; the knob stays a hydra override
    text = re.sub(
        r'(\[search\."trainer\.max_epochs"\]\n)low = 4\nhigh = 20\n',
        r"\1low = 1\nhigh = 3\n",
        text,
    ).replace("default = 10\n", "default = 2\n")
    # one run each (no confirmation runs): this night tests the stack, not the ratchet
    toml.write_text(
        text + "\n[ratchet]\nbaseline_repeats = 1\nconfirm_runs = 0\n\n[report]\nauto = false\n"
    )
    assert load_config(lab).tracking.trial_run  # the trial logs into its own MLflow run

    cli("run", str(lab), timeout=400)
    st = status(lab)
    assert st["state"] == "finished" and st["trials"]["succeeded"] == 3, st

    trials = rows(lab, "SELECT * FROM trials ORDER BY id")
    widths = set()
    for t in trials:
        params = json.loads(t["params"])
        width, lr = params["model.width"], params["optim.lr"]
        widths.add(width)
        folder = lab / ".nightlab" / "trials" / str(t["id"])
        exp_dir = folder / "out/artifacts/digits" / f"cnn-w{width}" / f"lr{lr:g}-seed{t['seed']}"
        stdout = (folder / "stdout.log").read_text()
        assert f"checkpoint: {exp_dir / 'model.pt'}" in stdout
        # the overrides reached the model: the resolved config and the weights' shapes
        saved = (exp_dir / "config.yaml").read_text()
        assert f"  width: {width}\n" in saved
        assert f"max_epochs: {params['trainer.max_epochs']}\n" in saved
        state = torch.load(exp_dir / "model.pt", weights_only=True)
        assert state["conv1.weight"].shape[0] == width
        lh[2].DigitsCNN(width=width).load_state_dict(state)
        assert not (folder / "outputs").exists() or not any((folder / "outputs").iterdir())
        # NightlabCallback reported each epoch to nightlab (JSON lines, step = the epoch)
        logged = [json.loads(x) for x in (folder / "out/metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in logged] == list(range(1, params["trainer.max_epochs"] + 1))
        assert all(set(x["metrics"]) == {"train_loss", "val_loss", "val_acc"} for x in logged)
        assert logged[-1]["metrics"]["val_acc"] == pytest.approx(t["objective"])
        last = torch.load(folder / "out/artifacts/checkpoints/last.pt", weights_only=True)
        lh[2].DigitsCNN(width=width).load_state_dict(last)  # the callback's per-epoch save
        assert t["objective"] > 0.05
    assert len(widths) >= 2  # the search varied the width, and each trial got its own
    untracked = git(lab, "status", "--porcelain", "--untracked-files=all")
    assert "outputs" not in untracked and ".nightlab" not in untracked  # no litter

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{lab / '.nightlab' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lh")  # `nightlab init` names the lab after its folder
    only_trials = "tags.`nightlab.trial_id` LIKE '%'"  # not the night's parent run
    runs = {
        r.data.tags["nightlab.trial_id"]: r
        for r in client.search_runs([exp.experiment_id], only_trials, max_results=50)
    }
    assert len(runs) == 3
    for t in trials:
        run = runs[str(t["id"])]
        assert run.info.run_id == t["mlflow_run_id"]
        params = json.loads(t["params"])
        # logged by the trial through Lightning's MLFlowLogger: config, steps, checkpoint
        assert run.data.params["model.width"] == str(params["model.width"])
        assert run.data.params["trainer.precision"] == "32-true"
        assert run.data.params["checkpoint_path"].endswith("model.pt")
        assert Path(run.data.params["checkpoint_path"]).is_file()
        history = client.get_metric_history(run.info.run_id, "train_loss")
        epochs = params["trainer.max_epochs"]
        assert len(history) >= 3 * epochs  # per step (log_every_n_steps=5, 17 steps/epoch)
        assert len({m.step for m in history}) == len(history)
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == epochs
        # and what nightlab adds to the same run
        assert run.data.tags["nightlab.kind"] == t["kind"]
        assert run.data.tags["nightlab.status"] == "succeeded"


@pytest.mark.slow
def test_sigterm_stops_the_template_cleanly_with_last_pt(lh, tmp_path):
    import torch

    lab = example_copy(tmp_path / "lab")
    artifacts = tmp_path / "artifacts"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTLAB_", "MLFLOW_"))}
    proc = subprocess.Popen(
        [sys.executable, "train.py", "trainer.max_epochs=500"],
        cwd=lab, env={**base, "NIGHTLAB_ARTIFACTS": str(artifacts)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:  # until the callback's report of epoch 1 (printed)
            if line.startswith("step=1 train_loss="):
                break
        else:
            pytest.fail(f"no epoch reported: {proc.stderr.read()}")
    except BaseException:
        proc.kill()
        raise
    out, err, took = sigterm_timed(proc, 60)
    assert proc.returncode == 0, err
    assert took < 3.0, took  # inside nightlab's grace period before SIGKILL
    assert "stopped: SIGTERM" in err and "checkpoint:" not in out
    last = artifacts / "checkpoints" / "last.pt"
    lh[2].DigitsCNN(width=16).load_state_dict(torch.load(last, weights_only=True))
    assert not list(artifacts.rglob("model.pt"))  # a stopped run leaves last.pt only
