"""How a trial is launched: its slot and GPUs, its environment, its hydra overrides.
(What a trial finds in a whole night: tests/nights/test_trial_env.py.)"""

from __future__ import annotations

import pytest

from nightlab.config import load_config
from nightlab.trials import launch


def test_slots_map_to_gpus_and_cuda_visible_devices_is_honoured(make_lab, monkeypatch):
    lab = make_lab()
    cfg = load_config(lab)
    one = launch.build(cfg, lab, lab / "t", 1, {}, 0, lab, slot=1, gpus=["3", "5"])
    two = launch.build(cfg, lab, lab / "t", 2, {}, 0, lab, slot=2, gpus=["3", "5"])
    assert (one.env["CUDA_VISIBLE_DEVICES"], one.env["NIGHTLAB_SLOT"]) == ("5", "1")
    assert two.env["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert launch.detect_gpus() == ["2", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.detect_gpus() == []


def test_gpus_per_trial_gives_each_local_slot_its_own_group(make_lab):
    lab = make_lab()
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + "\n[executor]\nslots = 2\ngpus_per_trial = 2\n"
                    'gpus = [0, 2, 3, 5]\n')  # fmt: skip
    cfg = load_config(lab)
    gpus = [str(g) for g in cfg.executor.gpus]
    seen = [
        launch.build(cfg, lab, lab / "t", 1, {}, 0, lab, slot=s, gpus=gpus).env[
            "CUDA_VISIBLE_DEVICES"
        ]
        for s in (0, 1, 2)
    ]
    assert seen == ["0,2", "3,5", "0,2"]  # a third slot would share the first group


@pytest.mark.parametrize(
    "value",
    [64, 3e-3, 1e-05, -2, 0.0, True, False, None, "adam", "resnet18", "a.b/c-d", "3", "1e-3",
     "true", "null", "with space", "a,b", "it's", "x=y", "${oc.env:HOME}", [1, 2], ["a", "b c"],
     "C:\\dir\\x", "ends with\\", "it\\'s", "\\\\server\\share"],
)  # fmt: skip
def test_hydra_overrides_read_back_as_the_same_value(value):
    """What nightlab appends is parsed by Hydra's own grammar into the value it meant."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = launch.hydra_overrides({"model.opt": value})
    parsed = OverridesParser.create().parse_overrides([override])[0]
    assert parsed.key_or_group == "model.opt"
    assert parsed.value() == value and type(parsed.value()) is type(value)


def test_a_sandboxed_trial_gets_a_writable_matplotlib_cache(make_lab, monkeypatch):
    """$HOME is read-only in the sandbox: matplotlib (imported by Lightning) would warn; its
    cache goes to the box's private /tmp (a shared one would let trials poison each other)."""
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    lab = make_lab()
    cfg = load_config(lab)
    env = launch.build(cfg, lab, lab / "t", 1, {}, 0, lab).env
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert not (lab / ".nightlab" / "cache").exists()
    monkeypatch.setenv("MPLCONFIGDIR", "/somewhere/else")  # the user's own choice stands
    assert launch.build(cfg, lab, lab / "t", 1, {}, 0, lab).env["MPLCONFIGDIR"] == "/somewhere/else"


def test_without_nvidia_smi_torch_is_asked_when_the_lab_wants_gpus(tmp_path, monkeypatch):
    fake = tmp_path / "python"  # a training Python whose torch sees two GPUs
    fake.write_text("#!/bin/sh\necho 2\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    assert launch.detect_gpus(probe_torch=True, python=str(fake)) == ["0", "1"]
    assert launch.detect_gpus(probe_torch=False, python=str(fake)) == []  # not asked: no probe
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    assert launch.detect_gpus(probe_torch=True, python=str(broken)) == []


def test_a_lab_asking_for_gpus_on_a_machine_without_any_never_trains_on_the_cpu(make_lab,
                                                                               monkeypatch):
    """gpus_per_trial = 1 and no GPU found: the night ran every trial on the CPU, saying
    nothing (hours slower, and not what the lab measured before). It fails at start now."""
    from nightlab import Lab
    from nightlab.loop.night import NightError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # none visible: nothing else is asked
    lab = make_lab()
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + "\n[executor]\ngpus_per_trial = 1\n")
    with pytest.raises(NightError, match=r"gpus_per_trial = 1 but no GPU was found"):
        Lab(lab).run(report=lambda line: None)
    assert not (lab / ".nightlab" / "trials" / "1").exists()  # nothing ran


def test_the_test_run_gets_no_mlflow_store_to_write(make_lab, tmp_path):
    """[tracking] trial_run opens the local MLflow store to a trial's box; the test run sees
    the test data, and could log the labels there for every later trial to read."""
    lab = make_lab()
    cfg = load_config(lab)
    store = tmp_path / "mlflow.db"
    store.write_text("")
    mlflow = {"uri": f"sqlite:///{store}", "experiment": "e", "artifacts": str(tmp_path / "a"),
              "night": "n"}  # fmt: skip
    specs = {test: launch.build(cfg, lab, lab / ".nightlab" / "trials" / "1", 1, {}, 0, lab,
                                mlflow=mlflow, test=test) for test in (False, True)}  # fmt: skip
    assert "nightlab.tracking.trial_run" in specs[False].command
    assert str(store) in specs[False].sandbox
    assert specs[True].command == cfg.trial.command  # not wrapped: no run of its own
    assert str(store) not in specs[True].sandbox and specs[True].env["NIGHTLAB_TEST"] == "1"
