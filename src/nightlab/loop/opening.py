"""Opening a night, or resuming one: the code it starts from (snapshotted once, when the
night begins), the protected files' hashes, this run's row and deadline, the GPUs, the
MLflow side (the store a trial's own run writes to, the mirror process); and the morning
report when the run ends.

A new loop on a night a dead one left carries on from the store: what was snapshotted and
hashed then still holds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.loop.night import Night, NightError
from nightlab.store import folder, history, queries, read
from nightlab.store.db import Store, Trial
from nightlab.store.paths import RESULT
from nightlab.trials import composed, launch, protect, training_spec
from nightlab.trials.workspace import Workspace, WorkspaceError, remove

TREE = "composed-config"  # the tree a resumed night reads its code's composed config in


def knob_defaults(
    lab: Path,
    cfg: Config,
    store: Store,
    report: Callable[[str], None],
    ws: Workspace | None = None,
) -> Config:
    """`[trial] params = "hydra"`: `cfg` with the defaults nightlab.toml leaves out taken
    from the project's composed config, read once a night (then kept in the store), and
    each declared default that differs from it reported (the declared one is used). Read
    again on a resumed night (its knobs changed), it is the night's own code's (a tree like
    a trial's, [trial] share linked), not the lab folder's the user may have edited since."""
    if cfg.trial.params != "hydra" or not cfg.search:
        return cfg
    with store.tx() as s:
        kept = Store.get_meta(s, composed.META_KEY) or {}
        base = Store.get_meta(s, "base_commit")
    if base is not None and kept.get("knobs") == sorted(cfg.search):
        values = kept["values"]  # (kept by a night that failed before it began: read again)
    elif base is not None and ws is not None and ws.changed_since(base):
        try:  # a tree like a trial's: the night's files, [trial] share linked
            values = _read_values(ws.checkout(TREE, base, cfg.trial.share), cfg, report)
        except WorkspaceError as exc:
            raise composed.ComposedConfigError(
                f"the night's code could not be checked out to read its composed config: {exc}"
            ) from None
        finally:
            remove(ws.tree_root(TREE))
    else:
        values = _read_values(lab, cfg, report)
    if base is None or kept.get("knobs") != sorted(cfg.search):
        with store.tx() as s:
            Store.set_meta(s, composed.META_KEY, {"knobs": sorted(cfg.search), "values": values})
    unset = cfg.unset_defaults()
    for name, knob in cfg.search.items():
        if name in unset or name not in values:
            continue
        if cfg.normalize({name: knob.default}) == {name: values[name]}:
            continue
        report(
            f"knob {name}: nightlab.toml's default {knob.default!r} differs from the "
            f"project's config ({values[name]!r}); the baseline uses nightlab.toml's "
            "(leave `default` out there to use the config's)"
        )
    if unset:
        shown = ", ".join(f"{name}={values[name]!r}" for name in unset)
        report(f"defaults from the project's config: {shown}")
    return cfg.with_defaults(values)


def _read_values(lab: Path, cfg: Config, report: Callable[[str], None]) -> dict[str, Any]:
    """The knobs' values in the composed config. Required for an omitted default; for a
    declared one only compared, so a failure is reported and the night goes on."""
    unset = cfg.unset_defaults()
    try:
        config = composed.read(cfg, lab)
    except composed.ComposedConfigError as exc:
        if unset:
            raise composed.ComposedConfigError(
                f"[search] {', '.join(unset)}: no `default` in nightlab.toml, and {exc}"
            ) from None
        report(f"note: the [search] defaults were not compared with the project's config: {exc}")
        return {}
    found = {}
    for name in cfg.search:
        try:
            found[name] = composed.lookup(config, name)
        except composed.ComposedConfigError as exc:
            if name in unset:
                raise
            report(f"note: {exc}")
    return composed.checked(cfg, found)


def open_run(night: Night, hours: float | None, options: dict[str, Any]) -> None:
    """The night's base commit and id (a new night snapshots the lab's working tree as it
    is now), its protected files' hashes, and this run with its deadline."""
    ws, cfg = night.ws, night.cfg
    with night.store.tx() as s:
        base = Store.get_meta(s, "base_commit")
        resumed = base is not None
        if not resumed:
            base = ws.snapshot()
            check_spec(night, base)  # before the night is recorded: the fix is a re-run
            Store.set_meta(s, "base_commit", base)
            Store.set_meta(s, "night_id", uuid.uuid4().hex)
        if Store.get_meta(s, "night_started") is None:  # (a night begun before it was kept)
            Store.set_meta(s, "night_started", time.time())  # names its MLflow runs
            Store.event(s, "snapshot", commit=base)
        else:
            check_spec(night, base, quiet=True)  # [spec] may have changed since
        night.night_id = Store.get_meta(s, "night_id")
    if resumed and ws.changed_since(base):
        night.report(
            "note: this night continues from the code as it was when it began; your "
            "changes since then are not used (`nightlab reset` starts a new night from them)"
        )
    night.base_commit = base
    with night.store.tx() as s:  # hashed when the night began; a resumed night keeps them
        protected = Store.get_meta(s, "protected_sha256")
        if protected is None:
            protected = protect.fingerprint(ws, base, cfg.trial.protected)
            Store.set_meta(s, "protected_sha256", protected)
    night.protected = protected
    night.run_id, night.deadline = night.journal.open_run(hours, cfg.budget.hours, options)


def check_spec(night: Night, commit: str, quiet: bool = False) -> None:
    """The lab's own training spec must run: fail now, not at the baseline."""
    if night.cfg.trial.spec:
        notes = training_spec.for_commit(night.cfg, night.reader(commit)).notes
        if notes and not quiet:
            night.report(f"{night.cfg.trial.spec} as it runs: {'; '.join(notes)}")


def rewrite_results(night: Night) -> None:
    """result.json is written just after a trial's outcome is committed: a loop killed in
    between leaves none, so a new loop writes it again from the store. So for a verdict
    on confirmation runs: a loop killed in between leaves the screen's in the file."""
    with read.connect(night.store.path) as conn:  # ids only: 10k trials, one stat each
        settled = queries.settled_trial_ids(conn)
        judged = queries.judged_on_confirmation(conn)  # the few that passed the screen
    missing = [i for i in settled if not (night.trial_dir(i) / RESULT).is_file()]
    missing += [i for i, verdict in judged.items()
                if i not in missing and _verdict_in_file(night, i) != verdict]  # fmt: skip
    if not missing:
        return
    traces = history.traces(night.store)
    for row in night.store.trials(Trial.id.in_(missing)):
        result = row.record(traces.get(row.cycle_id))
        folder.write_json(night.trial_dir(row.id) / RESULT, result)


def _verdict_in_file(night: Night, trial_id: int) -> Any:
    try:
        return json.loads((night.trial_dir(trial_id) / RESULT).read_text()).get("verdict")
    except (OSError, ValueError, AttributeError):
        return None


def gpus(night: Night) -> list[str]:
    """The GPUs the slots share out ([executor] gpus, else those detected), reported."""
    ex = night.cfg.executor
    found = (
        [str(g) for g in ex.gpus]
        if ex.gpus is not None
        else launch.detect_gpus(ex.gpus_per_trial > 0, night.cfg.repair.interpreter(night.lab))
    )
    if not found and ex.gpus_per_trial > 0 and ex.kind == "local":  # never CPU unsaid
        raise NightError(
            f"[executor] gpus_per_trial = {ex.gpus_per_trial} but no GPU was found "
            "(CUDA_VISIBLE_DEVICES, nvidia-smi -L, torch.cuda of [repair] python): name them "
            "with [executor] gpus = [...], or set gpus_per_trial = 0 to train on the CPU"
        )
    if found:
        k = max(1, ex.gpus_per_trial)
        shared = " (more slots than GPU groups: some share)" if night.slots * k > len(found) else ""
        night.report(f"GPUs {', '.join(found)}: {k} per slot (CUDA_VISIBLE_DEVICES){shared}")
    return found


def mlflow_options(night: Night) -> dict[str, Any]:
    """Where the night's runs go: nightlab.toml's `[tracking] mlflow_uri` / `experiment`,
    else the environment's MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME (a team's shared
    server), else the lab's own `.nightlab/mlflow.db` / the lab's name."""
    from nightlab.config import environment
    from nightlab.tracking.mirror import default_uri

    cfg, env = night.cfg, environment()
    with night.store.tx() as s:
        started = Store.get_meta(s, "night_started") or time.time()
    return {
        "uri": cfg.tracking.mlflow_uri
        or env.mlflow_tracking_uri
        or default_uri(night.state),
        "experiment": cfg.tracking.experiment or env.mlflow_experiment_name or cfg.lab.name,
        "artifacts": str(night.state / "mlartifacts"),
        "night": night.night_id,
        # the parent run's name; a trial's is `<this>-t<id>` (unique across nights)
        "night_name": f"{time.strftime('%Y-%m-%d', time.localtime(started))}-{night.night_id[:6]}",
    }


def trial_runs(night: Night) -> dict[str, Any] | None:
    """The MLflow options each trial opens its own run with ([tracking] trial_run); the
    store is prepared once, before trials open runs in parallel."""
    if not (night.cfg.tracking.enabled and night.cfg.tracking.trial_run):
        return None
    from nightlab.tracking import trial_run

    opts = mlflow_options(night)
    if error := trial_run.prepare(opts):
        raise NightError(
            f"[tracking] trial_run: the MLflow store could not be prepared: {error}. "
            "Fix the store or server, or set [tracking] trial_run = false"
        )
    return opts


def start_tracking(night: Night) -> Any:
    """The MLflow mirror process ([tracking] enabled), or None."""
    if not night.cfg.tracking.enabled:
        return None
    from nightlab.tracking.mirror import TrackingProcess

    opts = mlflow_options(night)
    return TrackingProcess(
        night.store.path, opts["uri"], opts["experiment"], Path(opts["artifacts"]),
        night.state / "tracking.log", night.night_id, opts["night_name"],
    )  # fmt: skip


def write_report(night: Night, top_k: int | None = None) -> Path | None:
    """The morning report; a failure is recorded and reported, never fatal."""
    from nightlab.report import write_report as write

    try:
        where = write(night.lab, night.cfg, top_k=top_k or night.cfg.report.top_k)
    except Exception as exc:
        night.event("report_failed", run_id=night.run_id, error=f"{exc}"[:2000])
        night.report.warning(f"the report could not be written: {type(exc).__name__}: {exc}")
        return None
    night.event("report_written", run_id=night.run_id, path=str(where))
    night.report(f"report: {where / 'final_paper_report.md'}")
    return where
