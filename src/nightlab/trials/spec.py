"""How a trial talks to nightlab: its command, parameters and environment."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.trials.local import TrialSpec


def build(
    cfg: Config,
    lab: Path,
    trial_dir: Path,
    trial_id: int,
    params: dict[str, Any],
    seed: int,
    workdir: Path,
) -> TrialSpec:
    """The command and environment of one trial (parameters per `[trial] params`)."""
    env = dict(os.environ)
    # `python` in the command is the interpreter nightlab runs with, unless the user's
    # own PATH setup in the command says otherwise
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        PYTHONUNBUFFERED="1",
        NIGHTLAB_TRIAL_ID=str(trial_id),
        NIGHTLAB_PARAMS=str(trial_dir / "params.json"),
        NIGHTLAB_METRICS=str(trial_dir / "metrics.jsonl"),
        NIGHTLAB_SEED=str(seed),
        NIGHTLAB_LAB_DIR=str(lab),
    )
    command = cfg.trial.command
    if cfg.trial.params == "hydra":
        command += "".join(f" {shlex.quote(f'{k}={v}')}" for k, v in params.items())
    elif cfg.trial.params == "env":
        env.update({f"NIGHTLAB_PARAM_{k.upper()}": str(v) for k, v in params.items()})
    return TrialSpec(
        trial_id=trial_id,
        command=command,
        workdir=workdir,
        trial_dir=trial_dir,
        env=env,
        budget_s=cfg.trial.budget_seconds,
        hang_s=cfg.trial.hang_seconds,
        metric=cfg.objective.metric,
        reduce=cfg.objective.reduce,
        maximize=cfg.objective.direction == "maximize",
    )
