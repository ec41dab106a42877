"""scikit-learn's bundled 8x8 digits as a LightningDataModule (nothing is downloaded).

The split is fixed: 60/20/20 stratified train/validation/test with `random_state=0`
(the same as examples/digits), whatever the seed, so every trial is scored on the same
validation set. The test split is held out: `setup("test")` refuses unless
`NIGHTLAB_TEST=1` (nightlab's finish-up sets it once, for the final pick).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

SPLIT_SEED = 0  # never the trial's seed: the validation set must not move


def split_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed train/val/test split: images (N, 1, 8, 8) in [0, 1] and labels."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_rest, x_te, y_rest, y_te = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=SPLIT_SEED
    )
    x_tr, x_va, y_tr, y_va = train_test_split(
        x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=SPLIT_SEED
    )
    return {"train": (x_tr, y_tr), "val": (x_va, y_va), "test": (x_te, y_te)}


def _dataset(split: tuple[np.ndarray, np.ndarray]) -> TensorDataset:
    x, y = split
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y).long())


class DigitsDataModule(L.LightningDataModule):
    """Loaders for the digits splits; the runtime toggles come from the `data` config."""

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        non_blocking: bool = True,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers  # validate_config: only with workers
        self.non_blocking = non_blocking
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str) -> None:
        splits = split_digits()
        if stage == "test":
            if os.environ.get("NIGHTLAB_TEST") != "1":
                raise RuntimeError(
                    "the test split is held out: it is read only with NIGHTLAB_TEST=1 "
                    "(nightlab's finish-up sets it once); select models on val_acc"
                )
            self.datasets["test"] = _dataset(splits["test"])
        else:
            self.datasets["train"] = _dataset(splits["train"])
            self.datasets["val"] = _dataset(splits["val"])

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,  # torch's global RNG, seeded by seed_everything
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # non-blocking copies overlap with compute when the memory is pinned (data.pin_memory)
        return [t.to(device, non_blocking=self.non_blocking) for t in batch]
