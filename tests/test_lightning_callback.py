"""nightlab.integrations.lightning.NightlabCallback on a tiny LightningModule (CPU, a few
batches): epoch metrics reach nightlab with step = epoch, state_dict checkpoints land at
$NIGHTLAB_ARTIFACTS/checkpoints/{last,model}.pt, and SIGTERM ends the fit cleanly."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import sigterm_timed

pytest.importorskip("lightning")

MODULE = textwrap.dedent(
    """
    import time
    import lightning as L
    import torch
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset


    class Tiny(L.LightningModule):
        def __init__(self, scale=1.0, delay=0.0):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)
            self.scale, self.delay = scale, delay

        def training_step(self, batch, batch_idx):
            time.sleep(self.delay)
            x, y = batch
            loss = F.cross_entropy(self.net(x), y) * self.scale
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))
            self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)


    def loader():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 4, generator=g)
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


    def trainer(callback, epochs):
        return L.Trainer(max_epochs=epochs, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    """
)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    (tmp_path / "tiny_module.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("NIGHTLAB_METRICS", "NIGHTLAB_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    import importlib

    import tiny_module

    return importlib.reload(tiny_module)


def test_metrics_carry_the_epoch_and_checkpoints_load(tiny, tmp_path, monkeypatch):
    import torch

    from nightlab.integrations.lightning import NightlabCallback

    metrics, artifacts = tmp_path / "metrics.jsonl", tmp_path / "artifacts"
    monkeypatch.setenv("NIGHTLAB_METRICS", str(metrics))
    monkeypatch.setenv("NIGHTLAB_ARTIFACTS", str(artifacts))
    before = signal.getsignal(signal.SIGTERM)
    model, callback = tiny.Tiny(), NightlabCallback()
    tiny.trainer(callback, 3).fit(model, tiny.loader(), tiny.loader())

    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]  # the step is the epoch
    for line in lines:
        assert set(line["metrics"]) == {"train_loss", "val_loss", "val_acc"}
        assert all(isinstance(v, float) for v in line["metrics"].values())
    assert signal.getsignal(signal.SIGTERM) == before and not callback.stopped
    folder = artifacts / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "model.pt"]  # no temp files
    for name in ("last.pt", "model.pt"):
        fresh = tiny.Tiny()
        fresh.load_state_dict(torch.load(folder / name, weights_only=True))
        assert torch.equal(fresh.net.weight, model.net.weight)


def test_chosen_metrics_a_submodule_and_nan_is_logged(tiny, tmp_path, monkeypatch):
    import torch

    from nightlab.integrations.lightning import NightlabCallback

    metrics = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("NIGHTLAB_METRICS", str(metrics))
    callback = NightlabCallback(["val_acc", "train_loss"], tmp_path / "ck", submodule="net")
    tiny.trainer(callback, 1).fit(tiny.Tiny(scale=float("nan")), tiny.loader(), tiny.loader())
    (line,) = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert list(line["metrics"]) == ["val_acc", "train_loss"]
    assert math.isnan(line["metrics"]["train_loss"])  # nightlab sees the divergence
    state = torch.load(tmp_path / "ck" / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}  # the plain network's state_dict


def test_outside_nightlab_it_prints_and_saves_nothing(tiny, tmp_path, monkeypatch, capsys):
    from nightlab.integrations.lightning import NightlabCallback

    monkeypatch.chdir(tmp_path)
    tiny.trainer(NightlabCallback(), 2).fit(tiny.Tiny(), tiny.loader(), tiny.loader())
    out = capsys.readouterr().out
    assert "step=1 train_loss=" in out and "step=2 " in out and "val_acc=" in out
    assert not (tmp_path / "checkpoints").exists()


SCRIPT = """
import sys
sys.path.insert(0, {folder!r})
import lightning as L
import tiny_module
from nightlab.integrations.lightning import NightlabCallback


class Announce(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.current_epoch == 1 and trainer.fit_loop.epoch_loop.batch_idx == 0:
            print("training", flush=True)


callback = NightlabCallback()
trainer = tiny_module.trainer(callback, 1000)
trainer.callbacks.append(Announce())
trainer.fit(tiny_module.Tiny(delay=0.05), tiny_module.loader(), tiny_module.loader())
print(f"stopped={{callback.stopped}} epoch={{trainer.current_epoch}}", flush=True)
"""


@pytest.mark.slow
def test_sigterm_mid_fit_exits_0_with_last_pt(tmp_path):
    import os

    import torch

    (tmp_path / "tiny_module.py").write_text(MODULE)
    (tmp_path / "script.py").write_text(SCRIPT.format(folder=str(tmp_path)))
    artifacts = tmp_path / "artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTLAB_")}
    env.update(NIGHTLAB_ARTIFACTS=str(artifacts), NIGHTLAB_METRICS=str(tmp_path / "m.jsonl"))
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "script.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "training", proc.stderr.read()
    except BaseException:
        proc.kill()
        raise
    out, err, took = sigterm_timed(proc, 30)
    assert proc.returncode == 0, err
    assert took < 3.0, took  # within nightlab's grace before SIGKILL
    assert "stopped=True" in out
    last = artifacts / "checkpoints" / "last.pt"
    assert last.is_file() and not (artifacts / "checkpoints" / "model.pt").exists()
    assert set(torch.load(last, weights_only=True)) == {"net.weight", "net.bias"}
    steps = [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # the interrupted epoch is reported too
