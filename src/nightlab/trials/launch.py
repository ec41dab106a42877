"""How a trial talks to nightlab: its command, parameters and environment."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.store import paths
from nightlab.store.redact import trial_env
from nightlab.tracking import trial_run
from nightlab.trials import sandbox
from nightlab.trials.watch import TrialSpec


def detect_gpus(probe_torch: bool = False, python: str | None = None) -> list[str]:
    """The GPUs trials may use: CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists;
    without nvidia-smi and with `probe_torch` (the lab asked for GPUs), those torch sees
    (asked in a subprocess of `python`: the loop never imports torch)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return _torch_gpus(python or sys.executable) if probe_torch else []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def _torch_gpus(python: str) -> list[str]:
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
        count = int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return []
    return [str(i) for i in range(count)]


_HYDRA_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_HYDRA_WORDS = {"true", "false", "null", "nan", "inf", "-inf"}


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar: numbers and bools as such, strings quoted
    unless they are a plain word Hydra would read back as the same string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _HYDRA_PLAIN.fullmatch(text) and text.lower() not in _HYDRA_WORDS:
        return text
    # inside quotes Hydra unescapes only backslashes before a quote or the closing quote
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def hydra_overrides(params: dict[str, Any]) -> list[str]:
    """`[trial] params = "hydra"`: one `dotted.key=value` override per parameter."""
    return [f"{key}={hydra_value(value)}" for key, value in params.items()]


def tracking_paths(mlflow: dict[str, Any]) -> list[Path]:
    """What `[tracking] trial_run` opens to a sealed trial: a local MLflow store (the
    sqlite file itself, or a file store's folder) and its artifact folder. The MLflow
    mirror, never the record: state.db and the trial folders stay out of sight."""
    uri, out = str(mlflow["uri"]), []
    if uri.startswith("sqlite:///"):
        out.append(Path(uri.removeprefix("sqlite:///")))
    elif uri.startswith("file:") or "://" not in uri:
        out.append(Path(uri.removeprefix("file://").removeprefix("file:")))
    artifacts = Path(mlflow["artifacts"])
    artifacts.mkdir(parents=True, exist_ok=True)
    return [p for p in out if p.exists()] + [artifacts]


def build(
    cfg: Config,
    lab: Path,
    trial_dir: Path,
    trial_id: int,
    params: dict[str, Any],
    seed: int,
    workdir: Path,
    slot: int = 0,
    gpus: list[str] | None = None,
    mlflow: dict[str, Any] | None = None,
    protected: Iterable[str] = (),
    test: bool = False,
    tree: Path | None = None,
) -> TrialSpec:
    """The command and environment of one trial (parameters per `[trial] params`); with
    GPUs, slot i sees GPU i mod their number as its only device; with `mlflow` (the
    tracking options, `[tracking] trial_run`) the trial first opens its own MLflow run
    (never the test run).
    The trial's box shows it its `tree` (default `workdir`, the lab's folder in it) and
    its output folder (`out/` of its trial folder) and, read-only, the `protected` files
    (lab-relative); only a `test` run sees the held-out test data and gets NIGHTLAB_TEST=1.
    With `[trial] evaluate`, the evaluation's own box (sandbox.eval_box) follows."""
    env = trial_env(cfg)  # agents' keys stay out unless [trial] pass_env lists them
    env.pop("NIGHTLAB_TEST", None)  # only the loop says a run is the test run
    env["NIGHTLAB_SLOT"] = str(slot)
    if gpus:  # slot i gets the i-th group of gpus_per_trial GPUs (wrapping around)
        k = max(1, cfg.executor.gpus_per_trial)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[(slot * k + j) % len(gpus)] for j in range(k))
    # `python` in the command is the interpreter nightlab runs with
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = trial_dir / paths.OUT
    env.update(
        PYTHONUNBUFFERED="1",
        NIGHTLAB_TRIAL_ID=str(trial_id),
        NIGHTLAB_PARAMS=str(out / paths.PARAMS),
        NIGHTLAB_METRICS=str(out / paths.METRICS),
        NIGHTLAB_ARTIFACTS=str(out / paths.ARTIFACTS),
        NIGHTLAB_SEED=str(seed),
        NIGHTLAB_LAB_DIR=str(workdir),  # the lab as the trial sees it: its own tree
    )
    if test:
        env["NIGHTLAB_TEST"] = "1"
        # the one run that sees the test data gets no MLflow store to write: later trials
        # with `trial_run` read it (nightlab mirrors the test run's figures itself)
        mlflow = None
    protected = list(protected)
    box = sandbox.trial_box(cfg, lab, tree or workdir, workdir, out, protected, test=test)
    if mlflow:  # the trial logs into its own run: the local MLflow store is opened to it
        box = replace(box, writable=(*box.writable, *tracking_paths(mlflow)))
    prefix = sandbox.prefix(cfg, lab, box)
    if prefix and "MPLCONFIGDIR" not in env:  # $HOME is read-only in the sandbox: matplotlib
        env["MPLCONFIGDIR"] = "/tmp/matplotlib"  # (imported by Lightning) caches in its /tmp
    command = cfg.trial.command
    if cfg.trial.params == "hydra":
        command += "".join(f" {shlex.quote(o)}" for o in hydra_overrides(params))
    elif cfg.trial.params == "env":
        env.update({f"NIGHTLAB_PARAM_{k.upper()}": str(v) for k, v in params.items()})
    if mlflow:
        command = trial_run.wrap(command, {**mlflow, "trial_id": trial_id})
    spec = TrialSpec(
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
        max_rss_mb=cfg.trial.max_rss_mb,
        sandbox=prefix,
        limits=cfg.limits,
    )
    if cfg.trial.evaluate:
        spec.evaluate = cfg.trial.evaluate
        box = sandbox.eval_box(
            cfg, lab, trial_dir / paths.EVAL, out / paths.ARTIFACTS, protected, test=test
        )
        spec.eval_sandbox = sandbox.prefix(cfg, lab, box)
    return spec
