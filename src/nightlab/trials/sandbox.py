"""The sandbox trials and coding agents run in: Debian's bubblewrap (`bwrap`). The lab folder
and /tmp are writable, the rest of the system read-only, the lab's `.git` read-only, and
trials have no network unless `[trial] network = true` (agents keep theirs: they call their
API, and may write their own settings in $HOME).

`[trial] sandbox = "none"` is an explicit choice; a lab that asks for bwrap on a machine
without a working one fails at start, never silently unsandboxed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from nightlab import UserError
from nightlab.config import Config


class SandboxError(UserError):
    """The sandbox the lab asks for cannot run here; the message says what to do."""


def require(cfg: Config) -> None:
    """Fail now when `[trial] sandbox = "bwrap"` cannot work on this machine."""
    if cfg.trial.sandbox == "none":
        return
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(
            '[trial] sandbox = "bwrap" but bubblewrap is not installed: install it '
            '(Debian/Ubuntu: apt-get install bubblewrap) or set [trial] sandbox = "none" '
            "to run trials and agents unsandboxed"
        )
    probe = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        raise SandboxError(
            f"bubblewrap does not work here ({probe.stderr.strip() or probe.returncode}); "
            "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1), "
            'or set [trial] sandbox = "none"'
        )


def prefix(cfg: Config, lab: Path, *, agent: bool = False) -> list[str]:
    """The argv that runs a command inside the sandbox ([] for `sandbox = "none"`)."""
    if cfg.trial.sandbox == "none":
        return []
    lab = lab.resolve()
    # /tmp stays the host's and writable: temp files, and tools or data kept there, work
    argv = ["bwrap", "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc",
            "--bind", "/tmp", "/tmp", "--bind", str(lab), str(lab)]  # fmt: skip
    if (lab / ".git").exists():
        argv += ["--ro-bind", str(lab / ".git"), str(lab / ".git")]
    home = os.environ.get("HOME")
    if agent and home and Path(home).is_dir():
        argv += ["--bind", home, home]  # a coding agent keeps its login and settings
    if not agent and not cfg.trial.network:
        argv.append("--unshare-net")
    return [*argv, "--die-with-parent", "--"]
