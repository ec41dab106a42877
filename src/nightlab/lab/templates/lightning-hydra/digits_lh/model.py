"""The network (a plain nn.Module: the checkpoint is its state_dict) and the
LightningModule that trains it.

Logged through Lightning (so into the trial's MLflow run under nightlab): `train_loss` per
step (every `trainer.log_every_n_steps`), `val_loss` and `val_acc` per epoch, `test_acc`
once with NIGHTLAB_TEST=1. nightlab reads them through train.py's `NightlabCallback` (one
report per epoch); a NaN/inf loss then raises FloatingPointError (train.py exits 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F


class DigitsCNN(nn.Module):
    """Two conv blocks and an MLP head for 1x8x8 images, 10 classes."""

    def __init__(self, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)  # 8x8 -> pool -> 4x4
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)  # 4x4 -> pool -> 2x2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x)


class DigitsClassifier(L.LightningModule):
    """Cross-entropy training of `net`; `optimizer` is a partial (hydra-zen `optim`)."""

    def __init__(
        self, net: nn.Module, optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer = optimizer
        # running sums kept as tensors: no host sync per step (cheap on a GPU too)
        self._train = torch.zeros(2)  # (loss sum, count) of this epoch
        self._val = torch.zeros(3)  # (loss sum, correct, count)
        self._val_loss = 0.0  # the last validation's mean loss
        self._test = torch.zeros(2)  # (correct, count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())

    def on_train_epoch_start(self) -> None:
        self._train = torch.zeros(2, device=self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self._train += torch.stack([loss.detach().float() * len(y), loss.new_tensor(len(y))])
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(3, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(1) == y).sum().float()
        self._val += torch.stack([loss, correct, loss.new_tensor(len(y))])

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, count = self._val.tolist()
        self._val_loss = loss_sum / count
        self.log_dict({"val_loss": self._val_loss, "val_acc": correct / count})

    def on_train_epoch_end(self) -> None:
        # runs after NightlabCallback's on_train_epoch_end: the NaN epoch is reported first
        train_sum, _ = self._train.tolist()
        if not (math.isfinite(train_sum) and math.isfinite(self._val_loss)):  # train.py exits 3
            raise FloatingPointError(f"non-finite loss in epoch {self.current_epoch + 1}")

    def on_test_epoch_start(self) -> None:
        self._test = torch.zeros(2, device=self.device)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        correct = (self(x).argmax(1) == y).sum().float()
        self._test += torch.stack([correct, correct.new_tensor(len(y))])

    def on_test_epoch_end(self) -> None:
        correct, count = self._test.tolist()
        test_acc = correct / count
        self.log("test_acc", test_acc)
        print(f"test_acc={test_acc:.4f}", flush=True)
