"""hydra-zen configs, all registered in `store`, and the strict `validate_config()`.

The composed config (`python train.py --cfg job` prints it):

    experiment: digits      # first level of the canonical folder (paths.py)
    seed: $NIGHTLAB_SEED or 0     threads: $NIGHTLAB_THREADS or 2
    model:   group `model`, `cnn` (DigitsCNN): name, width, dropout
    optim:   group `optim`, `adam` (default) or `sgd`: lr, weight_decay (momentum for sgd)
    data:    DigitsDataModule: batch_size and the runtime toggles num_workers, pin_memory,
             persistent_workers (needs num_workers > 0), non_blocking
    trainer: lightning.Trainer: max_epochs, accelerator, devices, precision ("32-true",
             AMP on request: "16-mixed" on a GPU, "bf16-mixed"), log_every_n_steps, ...

Every key can be overridden on the command line (`python train.py model.width=64
optim.lr=0.003 trainer.precision=bf16-mixed`); that is how nightlab passes its knobs
(`[trial] params = "hydra"`). A key that does not exist is refused by Hydra; a value that
makes no sense is refused by `validate_config()` before anything trains.
"""

from __future__ import annotations

import math
import re
from typing import Any

import lightning as L
import torch
from hydra.conf import HydraConf, JobConf, RunDir, SweepDir
from hydra_zen import ZenStore, builds, make_config

from digits_lh.data import DigitsDataModule
from digits_lh.model import DigitsCNN

store = ZenStore(name="digits_lh")

# `name` is metadata (zen_meta): it names the folder, it is not passed to DigitsCNN
CNNConf = builds(
    DigitsCNN, width=16, dropout=0.1, populate_full_signature=True, zen_meta={"name": "cnn"}
)
AdamConf = builds(torch.optim.Adam, lr=0.01, weight_decay=1e-6, zen_partial=True)
SGDConf = builds(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-6, zen_partial=True)
DataConf = builds(
    DigitsDataModule,
    batch_size=64,
    num_workers=0,
    pin_memory=False,
    persistent_workers=False,
    non_blocking=True,
    populate_full_signature=True,
)
TrainerConf = builds(
    L.Trainer,
    max_epochs=10,
    accelerator="auto",  # nightlab gives each slot its GPU through CUDA_VISIBLE_DEVICES
    devices=1,
    precision="32-true",  # fp32 by default; AMP only when asked
    log_every_n_steps=5,
    num_sanity_val_steps=0,
    enable_checkpointing=False,  # the product is a plain state_dict (paths.py)
    enable_progress_bar=False,
    enable_model_summary=False,
    zen_partial=True,  # train.py adds logger= and default_root_dir=
)

Config = make_config(
    hydra_defaults=[
        "_self_",
        {"model": "cnn"},
        {"optim": "adam"},
        {"data": "digits"},
        {"trainer": "default"},
        # Hydra writes nothing: no outputs/<date>/, no .hydra/, no train.log; the working
        # directory is left alone. train.py saves the resolved config in the canonical folder.
        {"override hydra/job_logging": "none"},
        {"override hydra/hydra_logging": "none"},
    ],
    experiment="digits",
    seed="${oc.decode:${oc.env:NIGHTLAB_SEED,0}}",
    threads="${oc.decode:${oc.env:NIGHTLAB_THREADS,2}}",
    model=None,
    optim=None,
    data=None,
    trainer=None,
)

store(CNNConf, group="model", name="cnn")
store(AdamConf, group="optim", name="adam")
store(SGDConf, group="optim", name="sgd")
store(DataConf, group="data", name="digits")
store(TrainerConf, group="trainer", name="default")
store(Config, name="config")
store(
    HydraConf(
        run=RunDir("."),
        sweep=SweepDir(dir="outputs/multirun", subdir="."),  # `-m`: only multirun.yaml
        output_subdir=None,
        job=JobConf(chdir=False),
    ),
    group="hydra",
    name="config",
)

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def register() -> None:
    """Put the store's configs into Hydra's ConfigStore (idempotent)."""
    store.add_to_hydra_store(overwrite_ok=True)


def compose_config(overrides: list[str] | None = None) -> Any:
    """The config `python train.py OVERRIDES` runs with (for tests and notebooks)."""
    from hydra import compose, initialize

    register()
    with initialize(version_base="1.3", config_path=None):
        return compose("config", overrides=list(overrides or []))


def _bad(key: str, value: Any, rule: str, fix: str) -> ValueError:
    return ValueError(f"invalid config {key}={value!r}: {rule}; fix: {fix}")


def _int(cfg: Any, key: str, low: int, high: int | None = None) -> int:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(key, value, f"must be an integer >= {low}", f"pass e.g. {key}={low}")
    if high is not None and value > high:
        raise _bad(key, value, f"must be at most {high}", f"pass e.g. {key}={high}")
    return value


def _float(cfg: Any, key: str, low: float, high: float, *, open_low: bool = False) -> float:
    value = _get(cfg, key)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if open_low else value >= low)
    if not ok or value > high:
        bound = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise _bad(key, value, f"must be a number in {bound}", f"pass {key}=<a value in {bound}>")
    return float(value)


def _bool(cfg: Any, key: str) -> bool:
    value = _get(cfg, key)
    if not isinstance(value, bool):
        raise _bad(key, value, "must be true or false", f"pass {key}=true or {key}=false")
    return value


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if part not in node:
            raise ValueError(
                f"invalid config: {key} is missing; fix: compose the config from "
                "digits_lh.config (python train.py, or compose_config() in Python)"
            )
        node = node[part]
    return node


def validate_config(cfg: Any) -> None:
    """Refuse a config that makes no sense, before anything trains: ValueError naming the
    key, the value and the fix. Nothing is corrected silently."""
    for key in ("experiment", "model.name"):
        value = _get(cfg, key)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            rule = "must be a folder name (letters, digits, _ . -)"
            raise _bad(key, value, rule, f"pass e.g. {key}=digits")
    _int(cfg, "seed", 0)
    _int(cfg, "threads", 1, 256)
    _int(cfg, "model.width", 1, 1024)
    _float(cfg, "model.dropout", 0.0, 0.95)
    _float(cfg, "optim.lr", 0.0, 10.0, open_low=True)
    _float(cfg, "optim.weight_decay", 0.0, 1.0)
    _int(cfg, "data.batch_size", 1, 4096)
    workers = _int(cfg, "data.num_workers", 0, 64)
    _bool(cfg, "data.pin_memory")
    _bool(cfg, "data.non_blocking")
    if _bool(cfg, "data.persistent_workers") and workers == 0:
        raise _bad(
            "data.persistent_workers",
            True,
            "needs worker processes but data.num_workers=0",
            "pass data.num_workers=2 (or more), or data.persistent_workers=false",
        )
    _int(cfg, "trainer.max_epochs", 1, 10_000)
    _int(cfg, "trainer.log_every_n_steps", 1)
    precision = str(_get(cfg, "trainer.precision"))
    if precision not in PRECISIONS:
        raise _bad(
            "trainer.precision",
            precision,
            f"must be one of {', '.join(PRECISIONS)}",
            "pass trainer.precision=32-true (fp32), or 16-mixed / bf16-mixed for AMP",
        )
    on_cpu = _get(cfg, "trainer.accelerator") == "cpu" or not torch.cuda.is_available()
    if precision.startswith("16-") and on_cpu:
        raise _bad(
            "trainer.precision",
            precision,
            "float16 needs a CUDA GPU and none is used",
            "pass trainer.precision=bf16-mixed on a CPU, or 32-true",
        )
