"""Where trials run: the `Executor` and `Trial` protocols, and `executor_for`, which picks
the lab's executor (`[executor] kind`).

`local` (local.py) and `slurm` (slurm.py) are built in; any other kind is a plugin: a
package that registers a factory under the entry point group `nightlab.executors`,

    [project.entry-points."nightlab.executors"]
    mykind = "my_package:MyExecutor"     # called with the lab's Config, returns an Executor

The loop uses nothing of a trial but what `Trial` declares. A plugin's trials may be the
built-in ones (start a `local.LocalExecutor` and wrap it) or its own; the types it needs
(`TrialSpec`, `Outcome`, `Handle`) are importable from here.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from nightlab.config import Config, PluginError, plugin
from nightlab.trials import local, slurm
from nightlab.trials.watch import Handle, Outcome, TrialSpec, wait_any

__all__ = ["Executor", "Handle", "Outcome", "Trial", "TrialSpec", "attach", "executor_for",
           "wait_any"]  # fmt: skip

GROUP = "nightlab.executors"


@runtime_checkable
class Trial(Protocol):
    """A started trial, as the loop watches it."""

    spec: TrialSpec  # what it runs (its id, folder, working folder, limits)
    started_at: float  # when its budget clock started (seconds since the epoch)
    events: list[dict[str, Any]]  # what it reports about itself ({"kind": …, "message": …,
    # …}, e.g. a Slurm job requeued): the loop pops them into the store
    poll_every: float  # with no fileno(): how often wait_any wakes up to poll it

    @property
    def handle(self) -> Handle:
        """Where it runs, recorded in the store so a restarted loop can `attach` to it."""
        ...

    def poll(self, now: float | None = None) -> Outcome | None:
        """Check it once (limits included: budget, hang, divergence); its Outcome once it
        has ended, None while it runs. Called often: it must return at once."""
        ...

    def kill(self, status: str, reason: str) -> None:
        """End it as `status` ("killed", "timeout") because of `reason`; poll() then returns
        the Outcome once it is gone. Killing twice keeps the first verdict."""
        ...

    def fileno(self) -> int | None:
        """A file descriptor that turns readable when it ends (wait_any sleeps on it), or None."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Starts trials and finds them again after a crash of the loop."""

    kind: str  # its `[executor] kind`
    slots: int  # trials at once, unless the run says otherwise
    local_gpus: bool  # True: the loop shares this machine's GPUs among the slots
    # (CUDA_VISIBLE_DEVICES per trial); False: the executor gives each trial its GPUs

    def start(self, spec: TrialSpec) -> Trial:
        """Start `spec` (its folder exists or is made); raises a UserError it cannot."""
        ...

    def attach(self, spec: TrialSpec, handle: Handle, started_at: float) -> Trial | None:
        """Watch again a trial a dead loop left running (`handle` as it recorded it); None
        when it has ended or cannot be found (the loop then settles it from its folder)."""
        ...


def executor_for(cfg: Config, kind: str | None = None) -> Executor:
    """The executor `[executor] kind` names (or `kind`): built in, or an installed plugin.
    Raises PluginError (one line, naming the package) when a plugin is missing or broken."""
    kind = kind or cfg.executor.kind
    if kind == local.KIND:
        return local.LocalExecutor(cfg)
    if kind == slurm.KIND:
        return slurm.SlurmExecutor(cfg)
    factory = plugin(GROUP, kind)
    try:
        made = factory(cfg)
    except Exception as exc:
        raise PluginError(
            f"the {GROUP} plugin {kind!r} (package {_package(factory)}) failed to start: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    missing = [name for name in ("kind", "slots", "local_gpus", "start", "attach")
               if not hasattr(made, name)]  # fmt: skip
    if missing:
        raise PluginError(
            f"the {GROUP} plugin {kind!r} (package {_package(factory)}) is not an executor: it "
            f"has no {', '.join(missing)} (see nightlab.trials.executor.Executor)"
        )
    return made


def attach(
    cfg: Config,
    spec: TrialSpec,
    handle: Handle,
    started_at: float,
    using: Executor | None = None,
) -> Trial | None:
    """Watch again a trial a dead loop left running, through the executor that started it:
    `handle.kind`, or for a handle recorded without one, slurm when it has a job id and
    local otherwise (the lab's `[executor] kind` may have changed since). `using`, the
    loop's own executor, serves when it is of that kind."""
    kind = handle.kind or (slurm.KIND if handle.job_id else local.KIND)
    ex = using if using is not None and using.kind == kind else executor_for(cfg, kind)
    return ex.attach(spec, handle, started_at)


def _package(factory: Any) -> str:
    """The distribution that provides `factory` (its top-level module when unknown)."""
    from importlib.metadata import packages_distributions

    top = (getattr(factory, "__module__", None) or "?").split(".")[0]
    return (packages_distributions().get(top) or [top])[0]
