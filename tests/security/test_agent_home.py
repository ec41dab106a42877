"""A coding agent's settings in its box: its folder in $HOME made when missing (aider stops
without ~/.aider; in its box it could not make it), the folder CODEX_HOME or
CLAUDE_CONFIG_DIR names writable instead, unless that folder holds $HOME or the lab."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nightlab.config import load_config
from nightlab.trials import sandbox

from conftest import build_lab

if shutil.which("bwrap") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("bubblewrap is missing: `make test` installs it (as root)")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)


@pytest.fixture
def home(monkeypatch):
    """A $HOME outside /tmp (a box has a private /tmp of its own)."""
    home = Path(tempfile.mkdtemp(prefix="nightlab-home-", dir="/var/tmp"))
    monkeypatch.setenv("HOME", str(home))
    for var in sandbox.AGENT_HOME_VARS.values():
        monkeypatch.delenv(var, raising=False)
    yield home
    shutil.rmtree(home)


def writes(lab: Path, program: str, *paths: Path) -> dict[str, bool]:
    """Which of `paths` a command in `program`'s agent box can create a file in."""
    work = lab / ".nightlab" / "agents" / "r1" / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work.parent / "prompt.md").write_text("the prompt")
    cfg = load_config(lab)
    box = sandbox.agent_box(cfg, lab, work, work.parent / "prompt.md", [program, "-p"])
    script = (
        'for d in "$@"; do if touch "$d/probe" 2>/dev/null; then echo yes; else echo no; fi; done'
    )
    done = subprocess.run(
        [*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script, "probe", *map(str, paths)],
        cwd=work, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {str(p): answer == "yes" for p, answer in zip(paths, done.stdout.split(), strict=True)}


def test_a_missing_settings_folder_is_made_and_writable(tmp_path, home):
    lab = build_lab(tmp_path / "lab")
    seen = writes(lab, "aider", home / ".aider", home)
    assert seen == {str(home / ".aider"): True, str(home): False}
    assert (home / ".aider").stat().st_mode & 0o777 == 0o700
    writes(lab, "claude", home / ".claude")
    assert (home / ".claude").is_dir() and not (home / ".claude.json").exists()  # files: not made
    writes(lab, "sh")
    assert sorted(p.name for p in home.iterdir()) == [".aider", ".claude"]  # no agent: nothing


def test_the_folder_its_variable_names_is_writable_instead(tmp_path, home, monkeypatch):
    lab = build_lab(tmp_path / "lab")
    elsewhere = Path(tempfile.mkdtemp(prefix="nightlab-codex-home-", dir="/var/tmp"))
    try:
        monkeypatch.setenv("CODEX_HOME", str(elsewhere))
        assert writes(lab, "codex", elsewhere) == {str(elsewhere): True}
        (home / ".config" / "codex").mkdir(parents=True)  # inside $HOME: fine too
        monkeypatch.setenv("CODEX_HOME", str(home / ".config" / "codex"))
        seen = writes(lab, "codex", home / ".config" / "codex", home / ".config", home)
        assert list(seen.values()) == [True, False, False]
        monkeypatch.setenv("CODEX_HOME", str(elsewhere))
        assert not (home / ".codex").exists()  # not made where codex no longer looks
        monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))  # under /tmp too
        (tmp_path / "claude").mkdir()
        assert writes(lab, "claude", tmp_path / "claude") == {str(tmp_path / "claude"): True}
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("where", ["home", "lab", "around"])
def test_a_variable_naming_home_or_the_lab_opens_nothing(home, monkeypatch, where):
    base = Path(tempfile.mkdtemp(prefix="nightlab-labs-", dir="/var/tmp"))  # seen in a box
    try:
        lab = build_lab(base / "lab")
        (lab / "settings").mkdir()
        named = {"home": home, "lab": lab / "settings", "around": base}[where]
        monkeypatch.setenv("CODEX_HOME", str(named))
        seen = writes(lab, "codex", home, base, lab / "settings")
        assert not any(seen.values()), seen
        cfg = load_config(lab)
        box = sandbox.agent_box(cfg, lab, lab / ".nightlab", lab / "p", ["codex"])
        assert box.home == sandbox.AGENT_HOMES["codex"]
    finally:
        shutil.rmtree(base)
