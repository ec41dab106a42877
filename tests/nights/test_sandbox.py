"""The sandbox: under bubblewrap a trial writes only its own tree and out/ (and a private
/tmp), cannot see the lab, its .git or its state, nor reach the network; `sandbox = "none"`
is explicit; a lab that asks for bwrap where there is none fails at start."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.trials.sandbox import SandboxError

from conftest import git

if shutil.which("bwrap") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("bubblewrap is missing: `make test` installs it (as root)")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

PROBE = """
import json, os, socket, sys
from pathlib import Path
outside, lab = Path(sys.argv[1]), Path(sys.argv[3])  # the lab as the user has it
tree = Path(os.environ["NIGHTLAB_LAB_DIR"])  # the trial's own copy
def tries(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__
seen = {
    "outside": tries(lambda: (outside / "escaped.txt").write_text("x")),
    "git": tries(lambda: (lab / ".git" / "escaped").write_text("x")),
    "lab": tries(lambda: (lab / "inside.txt").write_text("x")),
    "state": tries(lambda: (lab / ".nightlab" / "state.db").read_bytes()),
    "tree": tries(lambda: (tree / "inside.txt").write_text("x")),
    "tmp": tries(lambda: Path("/tmp/nightlab-sandbox-probe").write_text("x")),
    "net": tries(lambda: socket.create_connection(("127.0.0.1", int(sys.argv[2])), 2)),
}
(Path(os.environ["NIGHTLAB_ARTIFACTS"]) / "seen.json").write_text(json.dumps(seen))
print("score=1")
"""


def probe_lab(make_lab, tmp_path: Path, sandbox: str, name: str) -> tuple[Path, dict]:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    import tempfile

    outside = Path(tempfile.mkdtemp(prefix=f"nightlab-{name}-", dir="/var/tmp"))  # not /tmp
    lab = make_lab(max_trials=1, name=name, baseline_repeats=1)
    (lab / "train.py").write_text(PROBE)
    port = server.getsockname()[1]
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace('command = "python train.py"',
                 f'command = "python train.py {outside} {port} {lab}"\nsandbox = "{sandbox}"')
    )  # fmt: skip
    git(lab, "add", "-A")
    try:
        Lab(lab).run(report=lambda line: None)
    finally:
        server.close()
    seen = json.loads((lab / ".nightlab/trials/1/out/artifacts/seen.json").read_text())
    seen["escaped"] = (outside / "escaped.txt").exists()
    seen["lab_written"] = (lab / "inside.txt").exists()
    shutil.rmtree(outside)
    return lab, seen


def test_a_trial_in_the_sandbox_writes_only_its_own_tree(make_lab, tmp_path):
    lab, seen = probe_lab(make_lab, tmp_path, "bwrap", "boxed")
    assert seen["outside"] == "OSError" and not seen["escaped"]  # read-only system
    assert seen["git"] != "ok"  # the lab's history is not the trial's to change
    assert seen["lab"] != "ok" and not seen["lab_written"]  # nor the user's tree
    assert seen["state"] == "FileNotFoundError"  # the record is not even visible
    assert seen["tree"] == "ok" and seen["tmp"] == "ok"
    assert seen["net"] != "ok"  # a port listening on the host is out of reach


def test_sandbox_none_is_an_explicit_choice(make_lab, tmp_path):
    _, seen = probe_lab(make_lab, tmp_path, "none", "open")
    assert seen["outside"] == "ok" and seen["escaped"] and seen["net"] == "ok"
    assert seen["lab"] == "ok" and seen["lab_written"]


def test_bwrap_asked_for_but_missing_fails_at_start(make_lab, tmp_path, monkeypatch):
    lab = make_lab(max_trials=1)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(SandboxError, match='bubblewrap is not installed.*sandbox = "none"'):
        Lab(lab).run(report=lambda line: None)
    assert not (lab / ".nightlab" / "trials").exists()  # nothing ran unsandboxed
