"""Auto-repair: one recovery pass per failed trial (see SPEC "Auto-repair").

`recover` reads the failed trial's stderr and decides, in this order:

1. an unsupported model name (`[repair] unsupported_model_patterns`) whose name, or a model
   parameter of the trial, has a `model_fallback_map` entry: retry with the fallback model
   (a patched copy of the parameters is written to `.nightlab/autofix_configs/<id>.json`);
   a configured fallback wins over any install;
2. `ModuleNotFoundError: No module named 'X'`: install what `module_package_map`,
   `module_alias_map` or `module_clone_map` name for X (or X itself, when
   `allow_direct_module_install`) into the training environment, and retry once;
3. anything else: no repair (the failure and its log tail go to the worker).

Every attempt, and every recognised failure that is not repaired, is an `auto_repair` event.
A requirement is installed at most once per lab and interpreter: `.nightlab/repair/ledger.json`
remembers each install, so the same module missing again after its install is reported as
"the install did not help" instead of installed again (a trial that started before the
install landed is simply retried). Installs run in the loop's process with the trials'
environment (agents' keys scrubbed), each command killed after `INSTALL_TIMEOUT_S`; a guessed
(direct) install takes wheels only, so no build code of a guessed name runs. `recover` never
raises.

The passes: fallback.py (the model fallback), install.py (installs and clones; ledger.py
keeps what was installed), each reading the trial as failure.py gives it.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.config import Config
from nightlab.trials.repair.failure import EVENT, TAIL_CHARS, Failure, Retry
from nightlab.trials.repair.fallback import fallback, model_params, unsupported
from nightlab.trials.repair.install import install

__all__ = ["EVENT", "Retry", "missing_module", "model_params", "recover"]

# the last one in a log is the import that ended the trial
MISSING_MODULE = re.compile(r"No module named ['\"]([A-Za-z_][\w.]*)['\"]")


def recover(
    cfg: Config,
    lab: Path,
    state: Path,
    trial: Any,
    outcome: Any,
    log: Callable[..., None],
) -> Retry | None:
    """One recovery pass for a failed trial; None when there is nothing to repair.

    Never raises: an error inside is recorded as an `auto_repair` event (`action="error"`)."""
    try:
        if not cfg.repair.enabled or getattr(outcome, "status", "failed") != "failed":
            return None
        return _repair(Failure(cfg, Path(lab), Path(state), trial, outcome, log))
    except Exception as exc:  # a repair must never take the loop down
        try:
            log(
                EVENT,
                action="error",
                ok=False,
                message=f"auto-repair failed, nothing repaired: {type(exc).__name__}: {exc}",
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc()[-TAIL_CHARS:],
            )
        except Exception:
            pass
        return None


def _repair(failure: Failure) -> Retry | None:
    """A configured fallback model first (it wins over any install), then an install."""
    module = missing_module(failure.texts)
    found = unsupported(failure)
    if found is not None:
        line, named = found
        retry = fallback(failure, line, named, module)
        if retry is not None or module is None:
            return retry
    if module is not None:
        return install(failure, module)
    return None


def missing_module(texts: list[str]) -> str | None:
    """The module of the last `No module named 'X'` in the first text that has one."""
    for text in texts:
        found = MISSING_MODULE.findall(text)
        if found:
            return found[-1]
    return None
