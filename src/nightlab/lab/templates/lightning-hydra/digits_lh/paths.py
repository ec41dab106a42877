"""Canonical experiment folders and their artifacts: one grammar, no discovery, no fallback.

    <root>/<experiment>/<model.name>-w<model.width>/lr<optim.lr>-seed<seed>/

* root: `$NIGHTLAB_ARTIFACTS` under nightlab (the trial's own artifact folder), else
  `./outputs` (relative to where `python train.py` runs; ignored by git).
* lr is written with Python's `%g` (0.01 -> `lr0.01`, 0.0003 -> `lr0.0003`).
  e.g. `outputs/digits/cnn-w16/lr0.01-seed0/`.

Inside it, `required_artifacts()` names every file a finished run leaves:
`config.yaml` (the resolved hydra config) and `model.pt` (the network's plain
`state_dict`, saved with `torch.save(net.state_dict(), path)`; no pickled modules, no
Lightning .ckpt). `check_artifacts()` raises FileNotFoundError naming what is missing and
how to produce it; `load_model()` rebuilds the network from config.yaml and loads its
weights with `weights_only=True`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model.pt"


def artifact_root() -> Path:
    """`$NIGHTLAB_ARTIFACTS` under nightlab, else `./outputs`."""
    artifacts = os.environ.get("NIGHTLAB_ARTIFACTS")
    return Path(artifacts) if artifacts else Path("outputs")


def canonical_experiment_dir(cfg: Any, root: Path | None = None) -> Path:
    """The run's folder per the grammar above (`cfg`: the composed, validated config)."""
    root = artifact_root() if root is None else Path(root)
    return (
        root
        / str(cfg.experiment)
        / f"{cfg.model.name}-w{int(cfg.model.width)}"
        / f"lr{float(cfg.optim.lr):g}-seed{int(cfg.seed)}"
    )


def required_artifacts(exp_dir: Path) -> dict[str, Path]:
    """What a finished run leaves in `exp_dir`, by name (the only paths anything loads)."""
    exp_dir = Path(exp_dir)
    return {"config": exp_dir / CONFIG_FILE, "checkpoint": exp_dir / CHECKPOINT_FILE}


def check_artifacts(exp_dir: Path) -> dict[str, Path]:
    """`required_artifacts(exp_dir)`, after making sure each exists."""
    artifacts = required_artifacts(exp_dir)
    for name, path in artifacts.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"missing {name} artifact: {path} does not exist. It is written by a "
                f"finished `python train.py` run whose canonical folder is {Path(exp_dir)}: "
                "run it with the same experiment, model, optim.lr and seed (or pass the "
                "folder of the run you mean); nothing is searched for instead"
            )
    return artifacts


def save_state_dict(net: Any, exp_dir: Path) -> Path:
    """Save the network's plain state_dict to the canonical checkpoint path."""
    import torch

    path = required_artifacts(exp_dir)["checkpoint"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def load_model(exp_dir: Path) -> Any:
    """The trained network of the run in `exp_dir`: built from its config.yaml, weights
    from its state_dict (strict: every key must match)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    artifacts = check_artifacts(exp_dir)
    cfg = OmegaConf.load(artifacts["config"])
    net = instantiate(cfg.model)
    state = torch.load(artifacts["checkpoint"], map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net
