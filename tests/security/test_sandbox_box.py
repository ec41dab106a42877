"""The box itself: a hostile trial (as root, and as an unprivileged user) has no
capabilities, cannot remount, reach the network, see or signal the loop, read its
environment, outlive the night, nor share the host's /tmp and /dev/shm. Each test is a
hostile trial in a real night; it asserts what a user cares about afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path

import pytest

from .hostile import (
    ATTACK_SCORE,
    attack_row,
    digest,
    hostile_lab,
    kill_all,
    night,
    record_text,
    seen,
    wait_none_alive,
)
from conftest import build_lab, spawn_loop

pytestmark = pytest.mark.slow

KEY = "sk-test-" + "q" * 32  # the agents' key, in the loop's own environment

# Capabilities, a remount of the read-only system, the network.
CAPS = r"""
status = Path("/proc/self/status").read_text()
capeff = int(re.search(r"CapEff:\s*([0-9a-fA-F]+)", status).group(1), 16)
print(f"capeff={capeff}", flush=True)  # a metric too
tries(lambda: ARTIFACTS.mkdir(parents=True, exist_ok=True))
tries(lambda: write(ARTIFACTS / "capeff.txt", str(capeff)))
mounts = {}
for target in ("/", "/usr", "/proc"):
    r = subprocess.run(["mount", "-o", "remount,rw", target], capture_output=True, text=True)
    mounts[target] = [r.returncode, r.stderr.strip()[:200]]
escaped = tries(lambda: write(Path(C["outside"]) / "escaped", "written after a remount"))
tcp = tries(lambda: socket.create_connection(("127.0.0.1", C["port"]), 2).close())
seen(capeff=capeff, mounts=mounts, escaped=escaped, tcp=tcp)
"""

# The loop's process: found by its command line, its environment read, SIGKILLed; and a
# double-forked daemon in its own session, with a clean environment, meant to outlive it.
PIDS = r"""
loops = []
for d in Path("/proc").iterdir():
    if not d.name.isdigit():
        continue
    try:
        argv = (d / "cmdline").read_bytes().split(b"\0")
    except OSError:
        continue
    if b"run" in argv and any(os.path.basename(a) == b"nightlab" for a in argv):
        loops.append(int(d.name))
environ = {}
for pid in loops:
    env = tries(lambda: Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace"))
    environ[pid] = "OPENAI_API_KEY=" in env
    for item in env.split("\0"):
        if item.startswith("OPENAI_API_KEY="):
            print("stolen " + item, flush=True)
killed = {pid: tries(lambda: os.kill(pid, signal.SIGKILL)) for pid in loops}
r, w = os.pipe()
first = os.fork()
if first == 0:
    os.setsid()
    daemon = os.fork()
    if daemon == 0:
        tries(lambda: write(f"/tmp/{C['tag']}.pid", str(os.getpid())))
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execve(sys.executable,
                  [sys.executable, "-c", "import time; time.sleep(600)", C["tag"]], {})
    os.write(w, str(daemon).encode())
    os._exit(0)
os.close(w)
os.waitpid(first, 0)
daemon = int(os.read(r, 32) or 0)
print(f"daemon pid {daemon}", flush=True)
seen(loops=loops, environ=environ, killed=killed, daemon=daemon)
"""


def listening_tcp() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    return server


def connections(server: socket.socket) -> int:
    """How many connections reached `server` (accepted now, without waiting)."""
    n = 0
    while True:
        try:
            conn, _ = server.accept()
        except (BlockingIOError, OSError):
            return n
        conn.close()
        n += 1


def assert_caps_held(lab: Path, outside: Path, server: socket.socket) -> None:
    bad = attack_row(lab)
    saw = seen(lab, bad["id"])
    assert "capeff" in saw, f"the attack did not run: {bad['reason']} {bad['log_tail']}"
    assert saw["capeff"] == 0, f"the trial had capabilities: CapEff={saw['capeff']:#x}"
    assert all(rc != 0 for rc, _ in saw["mounts"].values()), saw["mounts"]
    assert not (outside / "escaped").exists(), "a remount let the trial write outside"
    assert connections(server) == 0, f"the trial reached a port on the host ({saw['tcp']})"


def assert_pids_held(lab: Path, rc: int | None, tag: str, left: list) -> None:
    bad = attack_row(lab)
    saw = seen(lab, bad["id"])
    assert "loops" in saw, f"the attack did not run: {bad['reason']} {bad['log_tail']}"
    leaked = KEY.encode() in record_text(lab)
    assert not leaked, "the loop's API key (read from its /proc environ) reached the record"
    assert rc == 0, f"the loop did not finish normally (exit {rc}): the trial killed it?"
    assert left == [], f"the trial's daemon outlived the night: {[p.pid for p in left]}"
    assert bad["status"] == "succeeded" and bad["verdict"] == "discarded"
    assert saw["loops"] == [], f"the trial saw the loop's process: {saw}"


def test_a_root_trial_has_no_capabilities_no_remount_no_network(tmp_path):
    """As root, the trial's CapEff is 0; remounting / read-write fails; a TCP port the test
    opens on 127.0.0.1 sees no connection."""
    outside = tmp_path / "outside"
    outside.mkdir()
    server = listening_tcp()
    try:
        consts = {"outside": str(outside), "port": server.getsockname()[1]}
        lab = hostile_lab(tmp_path / "lab", CAPS, consts, after=1)
        final, error = night(lab)
        assert_caps_held(lab, outside, server)
    finally:
        server.close()
    assert attack_row(lab)["objective"] == pytest.approx(ATTACK_SCORE)
    assert error is None, f"the night failed: {error!r}"


def test_a_trial_cannot_see_signal_or_outlive_the_loop(tmp_path):
    """The trial looks for the loop in /proc, reads its environment (the agents' key) and
    SIGKILLs it, and leaves a double-forked daemon: the loop finishes normally, the key is
    nowhere in the record, no process of the trial is alive after the night."""
    tag = f"nightlab-daemon-{uuid.uuid4().hex[:12]}"
    lab = hostile_lab(tmp_path / "lab", PIDS, {"tag": tag}, after=1)
    proc = spawn_loop(lab, log=tmp_path / "loop.log", env={"OPENAI_API_KEY": KEY})
    try:
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = wait_none_alive(tag)
        kill_all(left)
        Path(f"/tmp/{tag}.pid").unlink(missing_ok=True)
    assert_pids_held(lab, rc, tag, left)


# ------------------------------------------------------------------ as an unprivileged user
def nobody_python(site: str) -> list[str] | None:
    """An interpreter `nobody` can run with this venv's packages: the venv's own, else the
    system's of the same version (the venv's may live under /root, closed to others)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    probe = f"import site; site.addsitedir({site!r}); import nightlab, sqlalchemy, psutil"
    for python in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if not python:
            continue
        ok = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", probe], capture_output=True
        )
        if ok.returncode == 0:
            return [python]
    return None


def test_an_unprivileged_trial_has_no_capabilities_and_cannot_touch_the_loop(tmp_path):
    """The same attacks in a night run by `nobody` (a lab it owns, under a world-readable
    folder): CapEff 0, no remount, no network, the loop unseen, unsignalled, its key
    unread, no daemon left."""
    ci = os.environ.get("CI") == "true"
    if os.geteuid() != 0:
        pytest.skip("runs the night as `nobody` through runuser: the test must run as root")
    if shutil.which("runuser") is None:
        if ci:
            raise AssertionError("runuser (util-linux) is missing")
        pytest.skip("runuser (util-linux) is not installed")
    site = sysconfig.get_paths()["purelib"]
    python = nobody_python(site)
    if python is None:
        if ci:
            raise AssertionError(f"no interpreter `nobody` can run with {site}")
        pytest.skip(f"`nobody` can run no interpreter with this venv's packages ({site})")
    base = Path(tempfile.mkdtemp(prefix="nightlab-nobody-", dir="/tmp"))
    tag = f"nightlab-daemon-{uuid.uuid4().hex[:12]}"
    server = listening_tcp()
    try:
        base.chmod(0o755)
        outside = base / "outside"
        outside.mkdir()
        consts = {"outside": str(outside), "port": server.getsockname()[1], "tag": tag}
        lab = hostile_lab(base / "lab", CAPS + PIDS, consts, after=1, command="python3 train.py")
        launcher = base / "nightlab"  # its command line names `nightlab`, as the real one
        launcher.write_text(
            f"import runpy, site\nsite.addsitedir({site!r})\n"
            "runpy.run_module('nightlab', run_name='__main__', alter_sys=True)\n"
        )
        subprocess.run(["chown", "-R", "nobody:", str(base)], check=True)
        os.chown(outside, 0, 0)  # root's: `nobody` may not write here, in the box or not
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base),
            "NIGHTLAB_PLAIN": "1",
            "OPENAI_API_KEY": KEY,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        with open(base / "loop.log", "wb") as log:
            proc = subprocess.Popen(
                ["runuser", "-u", "nobody", "--", "env", "-i",
                 *(f"{k}={v}" for k, v in env.items()),
                 *python, str(launcher), "run", str(lab)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            rc = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            left = wait_none_alive(tag)
            kill_all(left)
            Path(f"/tmp/{tag}.pid").unlink(missing_ok=True)
        assert (lab / ".nightlab" / "state.db").is_file(), (base / "loop.log").read_text()
        assert_caps_held(lab, outside, server)
        assert_pids_held(lab, rc, tag, left)
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ private /tmp, /dev/shm
SHARED = r"""
other = Path(C["other_lab"])
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(C["sock"])
    s.sendall(b"hello from a trial")
    s.close()
seen(
    shm=tries(lambda: write(f"/dev/shm/{C['tag']}", "x")),
    tmp=tries(lambda: write(f"/tmp/{C['tag']}", "x")),
    other_toml=tries(lambda: write(other / "nightlab.toml", '[trial]\nsandbox = "none"\n')),
    other_train=tries(lambda: write(other / "train.py", "print('score=999')\n")),
    other_new=tries(lambda: write(other / "planted.py", "x")),
    other_hook=tries(lambda: write(other / ".git" / "hooks" / "post-checkout", "#!/bin/sh\n",
                                   0o755)),
    unix=tries(unix),
)
"""


def test_a_trials_tmp_and_dev_shm_are_its_own(tmp_path):
    """The trial writes /dev/shm/X, /tmp/X and into another lab under /tmp, and connects to
    a Unix socket the test listens on in /tmp: the host's files are untouched, the other
    lab byte-identical, the socket saw no connection."""
    tag = f"nightlab-attack-{uuid.uuid4().hex[:12]}"
    shm, tmp, sock = Path("/dev/shm") / tag, Path("/tmp") / tag, Path("/tmp") / f"{tag}.sock"
    others = Path(tempfile.mkdtemp(prefix="nightlab-other-", dir="/tmp"))
    server = socket.socket(socket.AF_UNIX)
    try:
        other = build_lab(others / "lab")
        before = digest(other)
        server.bind(str(sock))
        server.listen()
        server.setblocking(False)
        consts = {"tag": tag, "other_lab": str(other), "sock": str(sock)}
        lab = hostile_lab(tmp_path / "lab", SHARED, consts, after=1)
        final, error = night(lab)
        saw = seen(lab, attack_row(lab)["id"])
        assert "tmp" in saw, "the attack did not run"
        assert not shm.exists(), "the trial wrote the host's /dev/shm"
        assert not tmp.exists(), "the trial wrote the host's /tmp"
        assert digest(other) == before, "the trial changed another lab under /tmp"
        assert connections(server) == 0, f"a Unix socket in /tmp was reached: {saw['unix']}"
        assert error is None, f"the night failed: {error!r}"
    finally:
        server.close()
        for path in (shm, tmp, sock):
            path.unlink(missing_ok=True)
        shutil.rmtree(others, ignore_errors=True)
