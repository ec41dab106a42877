"""Installs for a missing module: `No module named 'X'` → what `[repair]` maps X to
(`module_package_map`, `module_alias_map`, `module_clone_map`, or X itself with
`allow_direct_module_install`), pip-installed into the training environment, once per lab
and interpreter (the ledger remembers each). Each command runs with the trials' environment
(agents' keys scrubbed), killed whole after INSTALL_TIMEOUT_S; a guessed (direct) install
takes wheels only, so no build code of a guessed name runs."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import CloneSpec
from nightlab.store.redact import trial_env
from nightlab.trials import process
from nightlab.trials.process import Finished
from nightlab.trials.repair.failure import TAIL_CHARS, Failure, Retry, toml_key
from nightlab.trials.repair.ledger import Ledger

INSTALL_TIMEOUT_S = 600.0  # one pip install or git command
URLISH = re.compile(r"^[\w+.-]+://|^[\w.-]+@[\w.-]+:")

# Import names whose PyPI name differs; used only to guess a direct install.
KNOWN_PACKAGES = {
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "PIL": "Pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
}


@dataclass
class Plan:
    """What to install for a missing module, and which config entry said so."""

    module: str
    source: str  # module_package_map|module_alias_map|module_clone_map|direct
    requirement: str  # the ledger's key: a pip requirement, or the clone's origin
    clone: CloneSpec | None = None


def install(failure: Failure, module: str) -> Retry | None:
    """Install what `module` needs and retry the trial; None (with an event saying why)
    when nothing is configured, the install failed, or it was tried before."""
    plan = _plan(failure, module)
    if plan is None:
        return None
    python = _python(failure)
    if python is None:
        return None
    ledger = Ledger(failure.state / "repair" / "ledger.json")
    top = module.split(".")[0]
    done = ledger.find(python, module=top)
    if done is not None:
        if _started_before(failure, done):  # failed before the install landed: retry it
            note = f"module {top} was installed ({done['requirement']}) while this ran"
            failure.event("install", True, note + "; no new install", module=top,
                          requirement=done["requirement"], python=python,
                          installed_for_trial=done.get("trial"))  # fmt: skip
            return Retry(dict(failure.trial.params), note=note)
        if done["requirement"] == plan.requirement:  # (a changed mapping is tried)
            failure.event(
                "install",
                False,
                f"module {top} is still missing after {done['requirement']} was installed "
                f"for trial {done.get('trial')}: the install did not help; map the module "
                f"to another requirement in [repair] (or delete {ledger.path} to allow "
                "installing it again)",
                module=top,
                requirement=done["requirement"],
                source=plan.source,
                python=python,
                not_helped=True,
            )
            return None
    earlier = ledger.find(python, requirement=plan.requirement)
    if earlier is not None:
        how = "installed" if earlier["ok"] else "failed to install"
        failure.event(
            "install",
            False,
            f"{plan.requirement} was already {how} (trial {earlier.get('trial')}, "
            f"module {earlier.get('module')}): not installed twice (delete "
            f"{ledger.path} to allow it)",
            module=top,
            requirement=plan.requirement,
            source=plan.source,
            python=python,
        )
        return None

    steps = _clone(failure, plan) if plan.clone is not None else []
    if all(s.ok for s in steps):
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        steps.append(_run([*pip, *_pip_args(failure, plan)], failure))
    ok = all(s.ok for s in steps)
    trial = getattr(failure.trial, "id", None)
    ledger.add(python, plan.module, plan.requirement, plan.source, ok, trial)
    last = steps[-1]
    if ok:
        note = f"installed {plan.requirement} for module {top}"
    else:
        note = f"installing {plan.requirement} for module {top} failed"
        if last.exit_code is None:
            note += f" (killed after {INSTALL_TIMEOUT_S:g} s)"
        if plan.source == "direct":
            note += (
                " (a guessed name is installed from wheels only: map it in [repair] "
                "module_package_map to allow more)"
            )
        if "No module named pip" in last.output:
            note += f"; {python} has no pip: run `{python} -m ensurepip` once"
    failure.event(
        "install",
        ok,
        note,
        module=top,
        missing=module,
        source=plan.source,
        requirement=plan.requirement,
        python=python,
        **_data(last),
        steps=[_data(s) for s in steps],
    )
    return Retry(dict(failure.trial.params), note=note) if ok else None


def _plan(failure: Failure, module: str) -> Plan | None:
    """What to install for `module` (its longest mapped prefix first); None, with an
    event saying how to configure it, when nothing is configured."""
    rc = failure.rc
    top = module.split(".")[0]
    names = _prefixes(module)
    for name in names:
        if name in rc.module_package_map:
            return Plan(top, "module_package_map", rc.module_package_map[name])
    for name in names:
        if name in rc.module_alias_map:
            alias = rc.module_alias_map[name]
            req = rc.module_package_map.get(alias, alias)
            return Plan(top, "module_alias_map", req)
    for name in names:
        if name in rc.module_clone_map:
            spec = rc.module_clone_map[name]
            if isinstance(spec, str):  # a bare repository
                spec = CloneSpec(repo=spec)
            origin = _origin(failure, spec.repo)
            req = origin + (f"@{spec.ref}" if spec.ref else "")
            req += f"#subdirectory={spec.subdir}" if spec.subdir else ""
            return Plan(top, "module_clone_map", req, clone=spec)
    key = toml_key(top)
    hint = (
        f'set [repair] module_package_map = {{{key} = "<pip requirement>"}} '
        f'(or module_alias_map = {{{key} = "<module>"}}, or module_clone_map = '
        f'{{{key} = {{repo = "<git url>"}}}}'
    )
    if not rc.allow_direct_module_install:
        failure.event(
            "none",
            False,
            f"no module named {module!r} and no install configured for it: {hint}, "
            "or allow_direct_module_install = true)",
            module=top,
            missing=module,
        )
        return None
    if (failure.lab / top).is_dir() or (failure.lab / f"{top}.py").is_file():
        failure.event(
            "none",
            False,
            f"no module named {module!r}, but the lab has {top} itself: an import path "
            f"problem, not a missing package (nothing installed); otherwise {hint})",
            module=top,
            missing=module,
        )
        return None
    return Plan(top, "direct", KNOWN_PACKAGES.get(top, top))


def _python(failure: Failure) -> str | None:
    """The training environment's interpreter, or None (with an event) when missing."""
    python = failure.rc.python or sys.executable
    found = failure.rc.interpreter(failure.lab)
    if found is None:
        failure.event(
            "install",
            False,
            f"[repair] python = {python!r} is not an executable interpreter: nothing installed",
            python=python,
        )
    return found


def _started_before(failure: Failure, done: dict[str, Any]) -> bool:
    started = getattr(failure.trial, "started_at", None)
    return isinstance(started, int | float) and started < done.get("ts", 0)


def _origin(failure: Failure, repo: str) -> str:
    """A repository URL as given, or a local path made absolute (relative to the lab)."""
    if URLISH.match(repo):
        return repo
    path = Path(repo).expanduser()
    path = path if path.is_absolute() else failure.lab / path
    return str(path.resolve()) if path.exists() else repo


def _clone_dir(failure: Failure, plan: Plan) -> Path:
    return failure.state / "repair" / "clones" / plan.module


def _clone(failure: Failure, plan: Plan) -> list[Finished]:
    spec = plan.clone
    assert spec is not None
    dest = _clone_dir(failure, plan)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    origin = _origin(failure, spec.repo)
    steps = clone(origin, dest, spec.ref, lambda argv: _run(argv, failure))
    if steps[-1].ok and spec.subdir:
        target = (dest / spec.subdir).resolve()
        if not target.is_relative_to(dest.resolve()) or not target.is_dir():
            why = f"subdir {spec.subdir!r} is not a folder of the clone"
            steps.append(Finished(["test", "-d", str(target)], 1, 0.0, why))
    return steps


def _pip_args(failure: Failure, plan: Plan) -> list[str]:
    if plan.clone is not None:
        target = _clone_dir(failure, plan)
        if plan.clone.subdir:
            target = target / plan.clone.subdir
        return ["-e", str(target)] if plan.clone.editable else [str(target)]
    if plan.source == "direct":  # a guessed name: wheels only, no build code runs
        return ["--only-binary", ":all:", plan.requirement]
    tokens = shlex.split(plan.requirement)
    # "torch --index-url URL": a requirement with pip options; else one requirement,
    # spaces included ("pkg >= 1.0")
    return tokens if any(t.startswith("-") for t in tokens) else [plan.requirement]


def _prefixes(module: str) -> list[str]:
    """'a.b.c' → ['a.b.c', 'a.b', 'a']."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _run(command: list[str], failure: Failure) -> Finished:
    """Run one install command in the lab (the trials' environment, never prompting for
    input; killed whole at INSTALL_TIMEOUT_S), output captured."""
    env = trial_env(failure.cfg)
    env.update(GIT_TERMINAL_PROMPT="0", PIP_NO_INPUT="1")
    start = time.monotonic()
    try:
        return process.run(command, cwd=failure.lab, env=env, timeout=INSTALL_TIMEOUT_S)
    except OSError as exc:
        return Finished(command, 127, time.monotonic() - start, f"{type(exc).__name__}: {exc}")


def _data(step: Finished) -> dict[str, Any]:
    """A command as an event records it."""
    return {
        "command": shlex.join(step.command),
        "exit_code": step.exit_code,
        "seconds": round(step.seconds, 2),
        "output_tail": step.output[-TAIL_CHARS:],
    }


def clone(
    origin: str, dest: Path, ref: str | None, run: Callable[[list[str]], Finished]
) -> list[Finished]:
    """Clone the repository `origin` into `dest` (a repository of its own, not the lab's:
    auto-repair's packages) and check out `ref`; each git command as `run` ran it, up to
    the first that failed."""
    steps = [run(["git", "clone", "--quiet", "--", origin, str(dest)])]
    if steps[-1].ok and ref:
        steps.append(run(["git", "-C", str(dest), "checkout", "--quiet", ref]))
    return steps
