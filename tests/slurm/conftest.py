"""A real one-machine Slurm cluster (scripts/slurm-local.sh) for the tests in tests/slurm/.

`slurm_cluster` (session scope) brings the cluster up once in a temporary folder, sets
`SLURM_CONF` in os.environ for the whole session (so submitit, in this process, talks to it)
and stops every daemon at the end, whatever happened (and, first, the clusters of earlier
sessions that were killed before their teardown). It skips, with the reason, when not root or
when the Debian packages cannot be installed; with CI=true it fails instead.

Every test under tests/slurm/ is marked `slurm` (deselect them with `-m "not slurm"`).
This folder is a package (tests/slurm/__init__.py) so that this conftest does not take the
module name `conftest` that tests elsewhere import (`from conftest import ...`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parents[1] / "scripts" / "slurm-local.sh"
PACKAGES = "slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
EXIT_PREREQUISITES = 2  # slurm-local.sh: not root, or the packages cannot be installed
SESSION_LOCK = ".pytest-session.lock"  # held by the session using the cluster in that folder


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slurm)


@dataclass(frozen=True)
class SlurmCluster:
    """A running local cluster: `env` is os.environ plus SLURM_CONF, for subprocesses."""

    dir: Path
    slurm_conf: Path
    env: dict[str, str] = field(repr=False)
    partition: str = "debug"  # the default partition; "long" has no time limit
    partitions: tuple[str, ...] = ("debug", "long")
    bringup_s: float = 0.0

    def run(self, args: Sequence[str], check: bool = True, timeout: float = 60, **kwargs):
        """Run a Slurm command (sbatch, squeue, sacct, scancel...) against this cluster."""
        return subprocess.run(
            list(args), env=self.env, check=check, timeout=timeout,
            capture_output=True, text=True, **kwargs,
        )  # fmt: skip

    def state(self, job_id: str) -> str:
        """The job's state as the controller sees it now ("" once it has left the queue)."""
        out = self.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], check=False)
        return out.stdout.strip()

    def accounted_state(self, job_id: str) -> str:
        """The job's state in the accounting database (what submitit reads): "" if unknown."""
        out = self.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State"], check=False)
        lines = out.stdout.strip().splitlines()
        return lines[0].strip() if lines else ""

    def wait_state(self, job_id: str, states: Sequence[str], timeout: float = 30) -> str:
        """Poll sacct until the job's state starts with one of `states`; returns it."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.accounted_state(job_id)
            if any(state.startswith(s) for s in states):
                return state
            time.sleep(0.2)
        raise AssertionError(f"job {job_id}: state {state!r} after {timeout}s, wanted {states}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"local Slurm unavailable under CI=true: {reason}")
    pytest.skip(f"local Slurm unavailable: {reason}")


def _script(action: str, folder: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action, str(folder)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _hold(lock: Path) -> int | None:
    """An fd holding an exclusive lock on `lock`, or None if another process holds it."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _stop_abandoned(root: Path) -> None:
    """Stop the clusters of earlier test sessions that died without their teardown (SIGKILL):
    their folder still has pid files and nobody holds its session lock."""
    for conf in root.glob("pytest-*/slurm*/etc/slurm.conf"):
        folder = conf.parents[1]
        if not any((folder / "run").glob("*.pid")):
            continue  # stopped cleanly
        fd = _hold(folder / SESSION_LOCK)
        if fd is None:
            continue  # a live session's cluster
        try:
            _script("down", folder, timeout=120)
        finally:
            os.close(fd)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        _unavailable(
            "the local cluster runs its daemons and jobs as root; run the tests as root "
            f"(Debian packages: {PACKAGES})"
        )
    # a short path: unix socket paths (munge, MariaDB) are limited to ~100 characters
    folder = tmp_path_factory.mktemp("slurm", numbered=True)
    session_lock = _hold(folder / SESSION_LOCK)  # held until the end: "this cluster is in use"
    _stop_abandoned(tmp_path_factory.getbasetemp().parent)
    previous = os.environ.get("SLURM_CONF")
    t0 = time.monotonic()
    try:
        up = _script("up", folder, timeout=600)
        if up.returncode == EXIT_PREREQUISITES:
            _unavailable(up.stderr.strip().splitlines()[-1] if up.stderr.strip() else "")
        if up.returncode != 0:
            pytest.fail(
                f"scripts/slurm-local.sh up {folder} failed ({up.returncode}):\n"
                f"{up.stdout}\n{up.stderr}"
            )
        conf = folder / "etc" / "slurm.conf"
        env = {**os.environ, "SLURM_CONF": str(conf)}
        os.environ["SLURM_CONF"] = str(conf)
        cluster = SlurmCluster(folder, conf, env, bringup_s=time.monotonic() - t0)
        print(f"\nlocal Slurm up in {cluster.bringup_s:.1f}s ({folder})")
        yield cluster
    finally:
        down = _script("down", folder, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if session_lock is not None:
            os.close(session_lock)
    if down.returncode != 0:  # reached only when nothing else went wrong first
        pytest.fail(f"scripts/slurm-local.sh down {folder} failed:\n{down.stdout}\n{down.stderr}")
