"""Train a small CNN on scikit-learn's bundled 8x8 digits with PyTorch Lightning, configured
with hydra-zen (a nightlab trial; also runs on its own: `python train.py`).

Contract with nightlab (through `nightlab.integrations.lightning.NightlabCallback`):

* Parameters are Hydra overrides appended to the command (`[trial] params = "hydra"`):
  `python train.py model.width=64 optim.lr=0.003`. The configs live in digits_lh/config.py;
  `validate_config()` refuses a bad value (ValueError naming key, value and fix).
* `NIGHTLAB_SEED` (default 0) is the config's `seed` and seeds everything
  (`lightning.seed_everything`); it moves init and shuffling only, never the fixed
  60/20/20 split. `NIGHTLAB_THREADS` (default 2) sets torch's CPU threads.
* After each epoch the callback reports `train_loss` (the epoch's last step), `val_loss` and
  `val_acc` with step = the epoch (1, 2, ...): to nightlab under it (JSON lines), else printed
  as `step=N train_loss=... val_loss=... val_acc=...`. The last `val_acc` is the result. A
  NaN/inf loss is reported, then the exit code is 3. Under nightlab it also saves the
  network's state_dict to `$NIGHTLAB_ARTIFACTS/checkpoints/last.pt` each epoch, and SIGTERM
  (nightlab's stop) ends the fit after the current batch, leaving that checkpoint.
* The test split is read only when `NIGHTLAB_TEST=1`: then `test_acc=...` is printed.
* With `MLFLOW_RUN_ID` set (nightlab's `[tracking] trial_run = true` opens the trial's run
  and sets it with `MLFLOW_TRACKING_URI`), Lightning's MLFlowLogger logs into that run: the
  flattened config as params, `train_loss` per step, `val_loss`/`val_acc` per epoch,
  `checkpoint_path`. Without it there is no MLflow logger at all.
* Outputs go to the canonical folder (digits_lh/paths.py):
  `<root>/<experiment>/<model.name>-w<model.width>/lr<optim.lr>-seed<seed>/` with root
  `$NIGHTLAB_ARTIFACTS` under nightlab, `./outputs` otherwise: `config.yaml`
  (resolved config) and `model.pt` (the network's plain state_dict), whose path is printed
  as `checkpoint: <path>`. Hydra itself writes nothing and keeps the working directory.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import lightning as L
import torch
from digits_lh.config import register, validate_config
from digits_lh.model import DigitsClassifier
from digits_lh.paths import CONFIG_FILE, canonical_experiment_dir, save_state_dict
from hydra.utils import instantiate
from hydra_zen import zen
from omegaconf import DictConfig, OmegaConf

from nightlab.integrations.lightning import NightlabCallback

# Lightning's banners ("GPU available: ...") and hints that are noise for this task
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
for noise in (".*does not have many workers", ".*`srun` command is available", ".*LeafSpec"):
    warnings.filterwarnings("ignore", message=noise)


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as MLflow params: `model.width`, `optim.lr`, ... (the same
    dotted names as nightlab's knobs; hydra-zen's `_target_` and friends left out)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if str(key).startswith("_"):
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def mlflow_logger() -> Any:
    """Lightning's MLFlowLogger resuming the run nightlab opened, or None outside it."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RuntimeError(
            "MLFLOW_RUN_ID is set but MLFLOW_TRACKING_URI is not: set both (nightlab's "
            "[tracking] trial_run does) or neither"
        )
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=uri, run_id=run_id)


def train(zen_cfg: DictConfig) -> None:
    cfg = zen_cfg
    validate_config(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_num_threads(cfg.threads)

    exp_dir = canonical_experiment_dir(cfg)
    exp_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, exp_dir / CONFIG_FILE, resolve=True)
    print(f"experiment_dir: {exp_dir}", flush=True)

    module = DigitsClassifier(net=instantiate(cfg.model), optimizer=instantiate(cfg.optim))
    data = instantiate(cfg.data)
    logger = mlflow_logger()
    if logger is not None:
        logger.log_hyperparams(flat_params(cfg))
    loggers = [] if logger is None else [logger]  # outside nightlab: no logger at all
    report = NightlabCallback(["train_loss", "val_loss", "val_acc"], submodule="net")
    trainer = instantiate(cfg.trainer)(logger=loggers, default_root_dir=exp_dir, callbacks=[report])
    try:
        trainer.fit(module, datamodule=data)
    except FloatingPointError as exc:  # the epoch with the NaN was reported already
        print(f"diverged: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)  # Hydra ignores a return value; SystemExit passes through it
    if report.stopped:  # SIGTERM: nightlab stopped the trial; last.pt is its checkpoint
        print("stopped: SIGTERM ended the fit; no test, no model.pt", file=sys.stderr, flush=True)
        return
    if os.environ.get("NIGHTLAB_TEST") == "1":  # held out: never seen by selection
        trainer.test(module, datamodule=data, verbose=False)

    path = save_state_dict(module.net, exp_dir)
    if logger is not None:
        logger.experiment.log_param(logger.run_id, "checkpoint_path", str(path))
    print(f"checkpoint: {path}", flush=True)


def main() -> None:
    register()
    zen(train).hydra_main(config_name="config", config_path=None, version_base="1.3")


if __name__ == "__main__":
    main()
