"""nightlab: run machine-learning experiments unattended.

The public face: `Lab` (the Python API, imported lazily so `import nightlab` inside a trial
stays cheap) and the trial-side helpers `params()` and `log()`. Every module logs under the
`nightlab` logger (the loop's lines on `nightlab.loop`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nightlab.lab.api import Lab

__all__ = ["Lab", "UserError", "params", "log", "__version__"]

# a library prints nothing unless the application configures logging (the CLI does)
logging.getLogger(__name__).addHandler(logging.NullHandler())


class UserError(Exception):
    """An error the user can fix: the CLI prints its message, not a traceback, and exits
    with `exit_code`. Every room's own errors derive from it (here, so that catching one
    imports nothing heavy)."""

    exit_code = 2


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from nightlab.lab.api import Lab

        return Lab
    if name == "__version__":
        return version()
    raise AttributeError(name)


def version() -> str:
    """The installed distribution's version (pyproject's `[project] version`, the one source)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nightlab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def params(**defaults: Any) -> dict[str, Any]:
    """This trial's parameters: `defaults` updated by the JSON file named by NIGHTLAB_PARAMS.

    Outside nightlab (NIGHTLAB_PARAMS unset) the defaults are returned as given, so the same
    script runs by hand. A NIGHTLAB_PARAMS that names a missing file is an error.
    """
    path = os.environ.get("NIGHTLAB_PARAMS")
    if not path:
        return dict(defaults)
    with open(path) as fh:
        return {**defaults, **json.load(fh)}


def log(step: int | None = None, **metrics: float) -> None:
    """Report metrics, e.g. `nightlab.log(val_acc=0.93, step=3)`.

    Under nightlab they are appended as one JSON line to NIGHTLAB_METRICS; run by hand they
    are printed as `name=value` lines (which nightlab would also read).
    """
    values = {k: float(v) for k, v in metrics.items()}
    path = os.environ.get("NIGHTLAB_METRICS")
    if not path:
        prefix = "" if step is None else f"step={step} "
        print(prefix + " ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        return
    line = json.dumps({"ts": time.time(), "step": step, "metrics": values}) + "\n"
    with open(path, "a") as fh:
        fh.write(line)
