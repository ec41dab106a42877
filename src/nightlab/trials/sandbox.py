"""The sealed box trials and coding agents run in: Debian's bubblewrap (`bwrap`).

A box sees the system read-only, a private /tmp, /run and /dev (GPU devices passed
through), its own PID, IPC and network namespaces (the loop and the host's ports are out
of sight), no capabilities even when nightlab runs as root, and dies with its parent.
Of the lab it sees only what it is given: its own tree and output folder (writable),
`[trial] share` paths (read-only unless `share_writable`; always read-only to a sealed
evaluation), the Python nightlab runs with.
Hidden entirely: the lab folder (the user's tree: nightlab.toml, the brief, their code),
the repository around it, its `.git` and `.nightlab/` (the store, trial folders, other
trees, locks). Protected files are read-only binds; `[objective] test_paths` are masked.

`[trial] sandbox = "none"` is an explicit choice; a lab that asks for bwrap on a machine
without a working one fails at start, never silently unsandboxed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nightlab import UserError
from nightlab.config import Config
from nightlab.store.paths import STATE_DIR, LabPaths
from nightlab.trials import agent_settings

# what every box gets: no capabilities (root included), every namespace of its own
_SEAL = ["--unshare-all", "--cap-drop", "ALL", "--new-session", "--die-with-parent"]
OPEN_ROOTS = {Path("/"), Path("/tmp"), Path("/run")}  # never shown whole to an agent
_GPU_DEVICES = ("/dev/nvidia*", "/dev/dri", "/dev/kfd")
# credentials in $HOME a trial has no use for: absent from its box (an agent keeps its own)
CREDENTIALS = (".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".netrc",
               ".git-credentials", ".pypirc", ".codex", ".claude", ".claude.json",
               ".cache/huggingface/token", ".huggingface", ".kaggle", ".gnupg")  # fmt: skip


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
        [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *_SEAL, "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        raise SandboxError(
            f"bubblewrap does not work here ({probe.stderr.strip() or probe.returncode}); "
            "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1), "
            'or set [trial] sandbox = "none"'
        )


def unsealed_warning(cfg: Config) -> str | None:
    """What the night cannot seal, said at start: nothing under `sandbox = "none"`; on
    Slurm, a node without bubblewrap (checked only there, when a job starts)."""
    if cfg.trial.sandbox == "none":
        test = (
            "; nor is [objective] test_paths hidden: every trial and agent can read the test data"
            if cfg.objective.test_paths else ""
        )  # fmt: skip
        return (
            'warning: [trial] sandbox = "none": trials and agents run unsealed, with your '
            f"user's rights over the lab, its record and the network{test}"
        )
    if cfg.executor.kind == "slurm":
        return (
            "warning: Slurm trials are sealed by bubblewrap on their node; a trial on a node "
            "without it does not run (exit 126, naming the node) rather than run unsealed"
        )
    return None


@dataclass(frozen=True)
class Box:
    """What one sandboxed command may see of the lab, beyond the read-only system."""

    writable: tuple[Path, ...] = ()  # its tree, its output folder
    readonly: tuple[Path, ...] = ()  # protected files, shared data, a prompt file
    masked: tuple[Path, ...] = ()  # held-out test data: present on the host, absent here
    network: bool = False
    # a coding agent's settings: (a per-run copy, where it appears, writable)
    settings: tuple[tuple[Path, Path, bool], ...] = ()


def prefix(cfg: Config, lab: Path, box: Box) -> list[str]:
    """The argv that runs a command inside `box` ([] for `sandbox = "none"`)."""
    if cfg.trial.sandbox == "none":
        return []
    argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for pattern in _GPU_DEVICES:
        for dev in sorted(glob.glob(pattern)):
            argv += ["--dev-bind", dev, dev]
    hidden = _hidden(Path(lab).resolve())
    argv += ["--perms", "1777", "--tmpfs", "/tmp", "--perms", "0555", "--tmpfs", "/run"]
    for root in _outermost(hidden):  # empty and read-only, where the real folder was
        argv += ["--perms", "0555", "--tmpfs", root]
    if box.network and os.path.isdir("/run/systemd/resolve"):  # /etc/resolv.conf's target
        argv += ["--ro-bind", "/run/systemd/resolve", "/run/systemd/resolve"]
    runtime = _runtime(hidden)
    for path in runtime:  # the interpreter and nightlab itself, where hidden
        argv += ["--ro-bind", path, path]
    for source, where, writable in box.settings:
        argv += ["--bind" if writable else "--ro-bind", str(source), str(where)]
    for path in box.writable:
        argv += ["--bind", str(path), str(path)]
    unseen = ["/tmp", "/run", *hidden]
    for path in box.readonly:  # visible already where nothing hides it, or bound above
        if os.path.lexists(path) and _inside(path, unseen) and not _inside(path, runtime):
            argv += ["--ro-bind", str(path), str(path)]
    for path in box.masked:  # a link is masked where it leads (bwrap cannot mount on it)
        path = os.path.realpath(path) if os.path.islink(path) else str(path)
        if os.path.isdir(path):
            argv += ["--perms", "0555", "--tmpfs", path]
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    argv += _SEAL + (["--share-net"] if box.network else [])
    return [*argv, "--"]


def trial_box(
    cfg: Config,
    lab: Path,
    tree: Path,
    workdir: Path,
    out: Path,
    protected: Iterable[str],
    *,
    test: bool = False,
) -> Box:
    """A trial's box: its tree (the lab's folder in it is `workdir`) and output folder
    writable, its protected files (lab-relative paths) and shared data read-only, the
    held-out test data absent unless this is the test run. That run writes no
    `share_writable` entry (it could copy the labels where later trials read), and under
    `[trial] evaluate` it does not see the test data either: its evaluation alone does (the
    training could plant the labels in its artifacts as predictions). Protected files are
    read-only binds: they cannot be swapped during the run and restored before the end."""
    lab = Path(lab).resolve()
    test = test and not cfg.trial.evaluate
    # the run that sees the test data writes nothing a later trial reads: no share_writable
    writable = [] if test else [lab / entry for entry in cfg.trial.share_writable]
    shared = [lab / entry for entry in cfg.trial.share if lab / entry not in writable]
    # every folder from the tree down to a protected file is a mount point of its own: it
    # cannot be renamed away with the file and replaced by a folder holding a forged one
    folders = {workdir / q for p in protected for q in [*Path(p).parents][:-1]}
    return Box(
        writable=(tree, out, *writable, workdir, *sorted(folders, key=lambda f: len(f.parts))),
        readonly=(*shared, *training_python(cfg, lab), LabPaths(lab).repair / "clones",
                  *(workdir / p for p in protected)),  # fmt: skip
        masked=(*credentials(), *(() if test else test_paths(cfg, lab, workdir))),
        network=cfg.trial.network,
    )


def eval_box(
    cfg: Config, lab: Path, folder: Path, artifacts: Path, protected: Iterable[str], *,
    test: bool = False,
) -> Box:
    """A sealed evaluation's box: its own folder (the base's protected files, links to the
    `share` entries) writable, the trial's artifacts, its protected files and the shared
    data read-only (`share_writable` too: an evaluation writes none of it), the held-out
    test data absent unless this is the test run, and the user's credentials absent, as in
    a trial's box (loading a trial's artifacts may run code the trial wrote)."""
    lab = Path(lab).resolve()
    return Box(
        writable=(folder,),
        readonly=(artifacts, *(folder / p for p in protected),
                  *(lab / entry for entry in cfg.trial.share)),  # fmt: skip
        masked=(*credentials(), *(() if test else test_paths(cfg, lab, folder))),
        network=cfg.trial.network,
    )


def smoke_box(cfg: Config, lab: Path, scratch: Path) -> Box:
    """A smoke check's box: its throwaway copy of the code, nothing else of the lab, and,
    as in a trial's, none of the user's credentials (what it prints is recorded)."""
    return Box(
        writable=(scratch,),
        readonly=tuple(training_python(cfg, lab)),
        masked=(*credentials(), *test_paths(cfg, lab, scratch)),
    )


def training_python(cfg: Config, lab: Path) -> list[Path]:
    """The environment of `[repair] python` (the training interpreter) where it lies in the
    lab (a git-ignored venv): shown read-only, unless that would show the lab itself."""
    python = cfg.repair.interpreter(lab) if cfg.repair.python else None
    if python is None:
        return []
    env = Path(os.path.abspath(python)).parent.parent  # venv/bin/python: not resolved
    if any(Path(h).is_relative_to(env) for h in _hidden(lab)):
        return []
    return [env]


def credentials() -> list[Path]:
    """The credential files and folders in $HOME that exist (masked in a trial's box)."""
    home = os.environ.get("HOME")
    if not home:
        return []
    found = [Path(home, entry) for entry in CREDENTIALS if os.path.lexists(Path(home, entry))]
    for var in agent_settings.AGENT_HOME_VARS.values():  # an agent's login kept elsewhere
        moved = os.path.realpath(os.environ[var]) if os.environ.get(var) else None
        if moved and os.path.isdir(moved) and not Path(home).is_relative_to(moved):
            found.append(Path(moved))
    return found


def test_paths(cfg: Config, lab: Path, tree: Path) -> list[Path]:
    """Where `[objective] test_paths` are, in the trial's tree and in the shared data."""
    out = []
    for entry in cfg.objective.test_paths:
        if os.path.isabs(entry):  # outside the lab (config checks): masked where it is
            out += [Path(entry), Path(os.path.realpath(entry))]
            continue
        inside = tree / entry  # unless a link (the share's) leads elsewhere: masked there
        if os.path.realpath(inside.parent) == os.path.abspath(inside.parent):
            out.append(inside)
        if any(Path(entry).is_relative_to(s) for s in cfg.trial.share):
            out.append(lab / entry)
            out.append(Path(os.path.realpath(lab / entry)))  # a shared link's real place
    return list(dict.fromkeys(out))


def agent_box(cfg: Config, lab: Path, work: Path, prompt: Path, argv: list[str]) -> Box:
    """A coding agent's box: its scratch copy writable, its prompt and the files its command
    line names readable, its network, and a copy of its own settings (made in `work`'s
    parent, `settings/`: see agent_settings.py); the held-out test data absent."""
    program = shutil.which(argv[0]) if argv else None
    named = [Path(a) for a in argv if a.startswith("/") and os.path.isfile(a)]
    lab = Path(lab).resolve()
    if program:  # where the sandbox hides it (/tmp): the CLI, its PATH entry, its install
        real = Path(program).resolve()
        hidden = [Path(p) for p in _hidden(lab)]
        for folder in (Path(program).parent, install_root(real)):  # never one holding the lab
            if folder not in OPEN_ROOTS and not any(h.is_relative_to(folder) for h in hidden):
                named.append(folder)
        named.append(real)
    settings: list[tuple[Path, Path, bool]] = []
    if argv and cfg.trial.sandbox != "none":
        places = agent_settings.places(Path(argv[0]).name, lab, [Path(p) for p in _hidden(lab)])
        into = work.parent / "settings"
        shutil.rmtree(into, ignore_errors=True)  # the last attempt's: dropped
        program_at = Path(program).resolve() if program else None
        settings = agent_settings.copy(places, into, program_at)
    return Box(
        writable=(work,),
        readonly=(prompt, *dict.fromkeys(named)),
        masked=tuple(test_paths(cfg, lab, work)),
        network=True,
        settings=tuple(settings),
    )


def install_root(program: Path) -> Path:
    """What a CLI needs beside its program: the npm prefix above its node_modules, the
    virtual environment holding it, else its folder."""
    for folder in program.parents:
        if folder.name == "node_modules":
            return folder.parent
        if (folder / "pyvenv.cfg").is_file():
            return folder
    return program.parent


_HIDDEN: dict[Path, tuple[str, ...]] = {}


def _hidden(lab: Path) -> tuple[str, ...]:
    """The lab, its state, the repository around it and that repository's git folder."""
    if lab in _HIDDEN:
        return _HIDDEN[lab]
    out = [str(lab), str(lab / STATE_DIR), os.path.realpath(lab / STATE_DIR)]  # a link, maybe
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
            cwd=lab, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        lines = done.stdout.splitlines() if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        lines = []
    home = os.environ.get("HOME", "")
    for i, line in enumerate(lines):
        path = Path(line) if Path(line).is_absolute() else lab / line
        path = path.resolve()
        if i == 0 and str(path) in ("/", home):
            continue  # a repository around the whole disk or home: hide the lab only
        out.append(str(path))
    hidden = tuple(dict.fromkeys(out))
    if lines:  # known for good once the lab is a repository
        _HIDDEN[lab] = hidden
    return hidden


def _inside(path: str | Path, roots: Iterable[str]) -> bool:
    return any(Path(path).is_relative_to(r) for r in roots)


def _outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another one (one mount hides them all)."""
    ordered = sorted(set(paths), key=len)
    kept: list[str] = []
    for path in ordered:
        if not any(Path(path).is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _runtime(hidden: tuple[str, ...]) -> list[str]:
    """Nightlab's interpreter, its environment and nightlab itself, where a hidden folder
    (or the private /tmp) would hide them: trials run `python` and import nightlab."""
    import nightlab

    roots = ["/tmp", "/run", *hidden]
    sensitive = [Path(h) for h in hidden]
    wanted = [sys.prefix, sys.base_prefix, str(Path(nightlab.__file__).resolve().parents[1])]
    out = []
    for path in dict.fromkeys(os.path.realpath(p) for p in wanted):
        inside = any(Path(path).is_relative_to(r) for r in roots)
        exposes = any(s.is_relative_to(path) for s in sensitive)
        if inside and not exposes:
            out.append(path)
    return out
