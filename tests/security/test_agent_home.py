"""A coding agent's settings in its box are a per-run copy: it reads its login and writes
its sessions, but nothing it writes reaches the real folder — no hook, notify command or
MCP server planted in `~/.claude` or `~/.codex` runs the next time the user starts that CLI.
The folder CODEX_HOME or CLAUDE_CONFIG_DIR names is copied instead, unless it holds $HOME or
the lab; a trial sees none of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nightlab.config import load_config
from nightlab.trials import agent_settings, sandbox

from conftest import build_lab

if shutil.which("bwrap") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("bubblewrap is missing: `make test` installs it (as root)")
    pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)", allow_module_level=True)

HOOK = '{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "touch /pwned"}]}]}}'


@pytest.fixture
def home(monkeypatch):
    """A $HOME outside /tmp (a box has a private /tmp of its own)."""
    home = Path(tempfile.mkdtemp(prefix="nightlab-home-", dir="/var/tmp"))
    monkeypatch.setenv("HOME", str(home))
    for var in agent_settings.AGENT_HOME_VARS.values():
        monkeypatch.delenv(var, raising=False)
    yield home
    shutil.rmtree(home)


def in_box(lab: Path, program: str, script: str, *args: str) -> str:
    """What `sh -c script args` prints inside `program`'s agent box."""
    work = lab / ".nightlab" / "agents" / "r1" / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work.parent / "prompt.md").write_text("the prompt")
    cfg = load_config(lab)
    box = sandbox.agent_box(cfg, lab, work, work.parent / "prompt.md", [program, "-p"])
    done = subprocess.run(
        [*sandbox.prefix(cfg, lab, box), "/bin/sh", "-c", script, "probe", *args],
        cwd=work, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_agent_reads_its_login_but_plants_nothing_in_its_settings(tmp_path, home):
    lab = build_lab(tmp_path / "lab")
    claude = home / ".claude"
    (claude / "projects" / "old").mkdir(parents=True)
    (claude / "projects" / "old" / "chat.jsonl").write_text("the user's last session\n")
    (claude / ".credentials.json").write_text('{"token": "the login"}')
    (claude / "settings.json").write_text("{}")
    (home / ".claude.json").write_text('{"numStartups": 3}')
    said = in_box(
        lab, "claude",
        'cat "$1/.credentials.json"; echo; ls "$1/projects" | wc -l; '
        'printf %s "$2" > "$1/settings.json" && echo wrote; '
        'mkdir -p "$1/hooks" && echo x > "$1/hooks/evil.sh" && echo made; '
        'echo "{}" > "$3" && echo json; touch "$4/x" 2>/dev/null || echo "home refused"',
        str(claude), HOOK, str(home / ".claude.json"), str(home),
    )  # fmt: skip
    assert said.split("\n") == ['{"token": "the login"}', "0", "wrote", "made", "json",
                                "home refused", ""]  # fmt: skip
    assert (claude / "settings.json").read_text() == "{}"  # the hook went with the copy
    assert not (claude / "hooks").exists() and not (home / "x").exists()
    assert (home / ".claude.json").read_text() == '{"numStartups": 3}'
    assert sorted(p.name for p in home.iterdir()) == [".claude", ".claude.json"]


def test_a_missing_settings_folder_is_made_and_usable(tmp_path, home):
    lab = build_lab(tmp_path / "lab")
    said = in_box(lab, "aider", 'touch "$1/tags.cache" && echo ok', str(home / ".aider"))
    assert said == "ok\n"  # aider stops without ~/.aider; in its box it could not make it
    assert (home / ".aider").stat().st_mode & 0o777 == 0o700
    assert not any((home / ".aider").iterdir())
    in_box(lab, "sh", "true")
    assert sorted(p.name for p in home.iterdir()) == [".aider"]  # no agent: nothing made


def test_the_cli_installed_in_its_settings_folder_still_runs(tmp_path, home, monkeypatch):
    lab = build_lab(tmp_path / "lab")
    local = home / ".claude" / "local"  # where `claude migrate-installer` puts it
    local.mkdir(parents=True)
    (local / "claude").write_text("#!/bin/sh\necho the cli ran\n")
    (local / "claude").chmod(0o755)
    (home / ".claude" / "projects").mkdir()
    (home / ".claude" / "projects" / "secret.jsonl").write_text("history\n")
    monkeypatch.setenv("PATH", f"{local}:/usr/bin:/bin")
    said = in_box(lab, "claude", f'{local}/claude; ls {home}/.claude/projects | wc -l')
    assert said == "the cli ran\n0\n"


def test_the_folder_its_variable_names_is_copied_instead(tmp_path, home, monkeypatch):
    lab = build_lab(tmp_path / "lab")
    elsewhere = Path(tempfile.mkdtemp(prefix="nightlab-codex-home-", dir="/var/tmp"))
    try:
        (elsewhere / "config.toml").write_text('model = "gpt-5.5"\n')
        monkeypatch.setenv("CODEX_HOME", str(elsewhere))
        said = in_box(lab, "codex", 'cat "$1/config.toml"; echo \'notify = ["x"]\' >> '
                      '"$1/config.toml" && echo wrote', str(elsewhere))  # fmt: skip
        assert said == 'model = "gpt-5.5"\nwrote\n'
        assert (elsewhere / "config.toml").read_text() == 'model = "gpt-5.5"\n'
        assert not (home / ".codex").exists()  # not made where codex no longer looks
        # a trial sees it not at all: it holds the agent's login
        assert Path(os.path.realpath(elsewhere)) in sandbox.credentials()
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
        script = 'for d in "$@"; do touch "$d/probe" 2>/dev/null && echo "$d"; done; true'
        assert in_box(lab, "codex", script, str(home), str(base), str(lab / "settings")) == ""
        hidden = [Path(p) for p in sandbox._hidden(lab.resolve())]
        assert agent_settings.places("codex", lab.resolve(), hidden) == [home / ".codex"]
    finally:
        shutil.rmtree(base)


def test_a_cli_installed_under_tmp_runs_in_its_box(tmp_path, home, monkeypatch):
    """npm puts a CLI's program in node_modules beside what it loads, and links it from a
    bin folder on PATH: all of it is under /tmp in a clone there, which the box hides."""
    lab = build_lab(tmp_path / "lab")
    package = tmp_path / "tools" / "npm" / "node_modules" / "fake-cli"
    (package / "bin").mkdir(parents=True)
    (package / "lib.sh").write_text("echo the library answered\n")
    (package / "bin" / "fake-cli.sh").write_text(f"#!/bin/sh\n. {package}/lib.sh\n")
    (package / "bin" / "fake-cli.sh").chmod(0o755)
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake-cli").symlink_to(package / "bin" / "fake-cli.sh")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    work = lab / ".nightlab" / "agents" / "r1" / "work"
    work.mkdir(parents=True)
    (work.parent / "prompt.md").write_text("the prompt")
    cfg = load_config(lab)
    box = sandbox.agent_box(cfg, lab, work, work.parent / "prompt.md", ["fake-cli"])
    assert sandbox.install_root(package / "bin" / "fake-cli.sh") == tmp_path / "tools" / "npm"
    done = subprocess.run([*sandbox.prefix(cfg, lab, box), "fake-cli"], cwd=work,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout == "the library answered\n", done.stderr
    seen = subprocess.run([*sandbox.prefix(cfg, lab, box), "ls", str(tmp_path)], cwd=work,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert seen.stdout.split() == ["lab", "tools"]  # the install, and the lab's own part only
    assert not (work / "probe").exists()
