"""`NightlabCallback`: a PyTorch Lightning callback that reports to nightlab.

    import lightning as L
    from nightlab.integrations.lightning import NightlabCallback

    trainer = L.Trainer(callbacks=[NightlabCallback()])

* Metrics: at the end of every training epoch (after that epoch's validation) the scalar
  values of `trainer.callback_metrics` (all of them, or the names in `metrics`) go to
  `nightlab.log()` with `step` = the number of epochs completed (1, 2, ...): the step is the
  epoch, so nightlab's pruner compares trials epoch by epoch. A NaN or inf is logged as is
  (nightlab detects the divergence). Outside nightlab `nightlab.log()` prints them as
  `step=N name=value ...` lines.
* Checkpoints: the model's plain `state_dict` (of `pl_module`, or of its attribute named by
  `submodule`) is saved to `<dirpath>/last.pt` after every epoch and to `<dirpath>/model.pt`
  when fitting ends (not when nightlab stopped it). `dirpath` defaults to
  `$NIGHTLAB_ARTIFACTS/checkpoints`; with neither, nothing is saved. Writes are atomic (a
  temporary file in the same folder, then `os.replace`): a trial killed mid-write leaves
  the previous `last.pt`. Load with `torch.load(path, weights_only=True)`.
* Stopping: from the start of training (`on_train_start`) to its end, SIGTERM (nightlab's stop:
  budget, pruning, `nightlab stop`) sets `trainer.should_stop`: Lightning finishes the
  current batch, ends the epoch, and this callback saves `last.pt`, so the trial exits
  normally well within nightlab's grace period (3 s before SIGKILL) for batches that take
  much less than that. `stopped` tells the script afterwards. Lightning ignores
  `should_stop` until `min_epochs`/`min_steps` are met; do not set them for nightlab trials.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nightlab

try:
    import lightning.pytorch as pl
    import torch
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        f"nightlab.integrations.lightning needs PyTorch Lightning ({exc}): "
        "pip install lightning (or 'nightlab[examples]')"
    ) from exc

LAST, FINAL = "last.pt", "model.pt"


class NightlabCallback(pl.Callback):
    """Log epoch metrics to nightlab, save state_dict checkpoints, stop cleanly on SIGTERM."""

    def __init__(
        self,
        metrics: Sequence[str] | None = None,
        dirpath: str | os.PathLike[str] | None = None,
        submodule: str | None = None,
    ) -> None:
        super().__init__()
        self.metrics = list(metrics) if metrics is not None else None
        self._dirpath = dirpath
        self.submodule = submodule
        self.stopped = False  # SIGTERM arrived during fit
        self._previous: Any = None  # the SIGTERM handler to restore
        self._installed = False

    # ------------------------------------------------------------------ where checkpoints go
    @property
    def dirpath(self) -> Path | None:
        if self._dirpath is not None:
            return Path(self._dirpath)
        artifacts = os.environ.get("NIGHTLAB_ARTIFACTS")
        return Path(artifacts) / "checkpoints" if artifacts else None

    def save(self, pl_module: pl.LightningModule, name: str) -> Path | None:
        """Atomically save the (sub)module's state_dict as `<dirpath>/<name>`."""
        folder = self.dirpath
        if folder is None:
            return None
        module = getattr(pl_module, self.submodule) if self.submodule else pl_module
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(module.state_dict(), fh)
            os.replace(tmp, folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return folder / name

    # ------------------------------------------------------------------ metrics
    def scalars(self, trainer: pl.Trainer) -> dict[str, float]:
        """The chosen callback_metrics as floats (non-scalars skipped, NaN kept)."""
        found = trainer.callback_metrics
        names = self.metrics if self.metrics is not None else list(found)
        out = {}
        for name in names:
            value = found.get(name)
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    continue
                value = value.item()
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = float(value)
        return out

    # ------------------------------------------------------------------ the hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not in on_fit_start: Lightning registers its own SIGTERM handler (which makes
        # fit raise) between the two, and this one must be the handler that runs
        self.stopped = False
        self._install(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        values = self.scalars(trainer)
        if values and trainer.is_global_zero:
            nightlab.log(step=trainer.current_epoch + 1, **values)
        if trainer.is_global_zero:
            self.save(pl_module, LAST)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()  # before Lightning restores the handlers it replaced (its teardown)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not self.stopped:
            self.save(pl_module, FINAL)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    # ------------------------------------------------------------------ SIGTERM
    def _install(self, trainer: pl.Trainer) -> None:
        if self._installed or not hasattr(signal, "SIGTERM"):
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            self.stopped = True
            trainer.should_stop = True

        try:
            self._previous = signal.signal(signal.SIGTERM, on_sigterm)
        except ValueError:  # not the main thread: leave signals alone
            return
        self._installed = True

    def _restore(self) -> None:
        if not self._installed:
            return
        self._installed = False
        previous = signal.SIG_DFL if self._previous is None else self._previous
        signal.signal(signal.SIGTERM, previous)  # None: set outside Python; default it
        self._previous = None
