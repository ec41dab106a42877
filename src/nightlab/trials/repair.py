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
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import CloneSpec, Config
from nightlab.store.redact import trial_env

EVENT = "auto_repair"
INSTALL_TIMEOUT_S = 600.0  # one pip install or git command
STDERR_BYTES = 65536  # how much of the end of stderr.log is read
TAIL_CHARS = 2000  # output kept in an event
MODEL_KEYS = ("model.name", "model_name", "model")  # model parameters, most likely first

# the last one in a log is the import that ended the trial
MISSING_MODULE = re.compile(r"No module named ['\"]([A-Za-z_][\w.]*)['\"]")
# after "Unsupported model.name": the name it reports, e.g. ": resnet999" or " 'unet_r34'"
NAMED_MODEL = re.compile(r"""\s*[:=]?\s*['"`]?([\w][\w.\-/]*)""")
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
class Retry:
    """Run the failed trial once more, with these parameters, because of `note`."""

    params: dict[str, Any]
    note: str


@dataclass
class _Step:
    """One command run during a repair."""

    command: list[str]
    exit_code: int | None  # None: killed at the timeout
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def data(self) -> dict[str, Any]:
        return {
            "command": shlex.join(self.command),
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "output_tail": self.output[-TAIL_CHARS:],
        }


@dataclass
class _Plan:
    """What to install for a missing module, and which config entry said so."""

    module: str
    source: str  # module_package_map|module_alias_map|module_clone_map|direct
    requirement: str  # the ledger's key: a pip requirement, or the clone's origin
    clone: CloneSpec | None = None


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
        return _Repair(cfg, Path(lab), Path(state), trial, outcome, log).run()
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


class _Repair:
    def __init__(
        self,
        cfg: Config,
        lab: Path,
        state: Path,
        trial: Any,
        outcome: Any,
        log: Callable[..., None],
    ) -> None:
        self.rc = cfg.repair
        self.cfg = cfg
        self.lab = lab
        self.state = state
        self.trial = trial
        self.log = log
        stderr = _read_tail(state / "trials" / str(trial.id) / "stderr.log")
        # stderr first; the outcome's tail (stderr and stdout) when stderr says nothing
        self.texts = [t for t in (stderr, getattr(outcome, "log_tail", None) or "") if t]

    def event(self, action: str, ok: bool, message: str, **data: Any) -> None:
        self.log(EVENT, action=action, ok=ok, message=message, **data)

    # ------------------------------------------------------------------ decide
    def run(self) -> Retry | None:
        module = missing_module(self.texts)
        unsupported = self._unsupported()
        if unsupported is not None:
            line, named = unsupported
            retry = self._fallback(line, named, module)
            if retry is not None or module is None:
                return retry
        if module is not None:
            return self._install(module)
        return None

    def _unsupported(self) -> tuple[str, str | None] | None:
        """The log line saying the model is unsupported, and the model name it gives."""
        fallbacks = self.rc.model_fallback_map
        for text in self.texts:
            for raw in self.rc.unsupported_model_patterns:
                pattern = _compile(raw)
                matches = list(pattern.finditer(text))
                if not matches:
                    continue
                m = matches[-1]
                start = text.rfind("\n", 0, m.start()) + 1
                end = text.find("\n", m.end())
                line = text[start : len(text) if end < 0 else end]
                n = NAMED_MODEL.match(text, m.end())
                token = n.group(1).rstrip(".-/") if n else None
                if token in fallbacks:
                    named = token
                else:  # a configured model named anywhere on that line
                    named = next(
                        (
                            k
                            for k in fallbacks
                            if re.search(rf"(?<![\w.-]){re.escape(k)}(?![\w-])", line)
                        ),
                        None,
                    )
                    named = named or token
                return line.strip(), named
        return None

    # ------------------------------------------------------------------ model fallback
    def _fallback(self, line: str, named: str | None, module: str | None) -> Retry | None:
        fallbacks = self.rc.model_fallback_map
        params = self.trial.params
        models = model_params(params)
        if named is not None and named not in fallbacks and all(v != named for _, v in models):
            named = None  # a word after the pattern, not a model this trial uses
        if named is not None:
            found = next(((p, v) for p, v in models if v == named), None)
        else:
            found = next(((p, v) for p, v in models if v in fallbacks), None)
        also = {"also_missing_module": module} if module else {}
        if found is None or found[1] not in fallbacks:
            model = named or (models[0][1] if models else None)
            if model in fallbacks:
                why = (
                    f"model {model!r} has a fallback ({fallbacks[model]!r}) but no trial "
                    "parameter holds it (looked for model.name, model_name, model, *.name, "
                    "*_name), so it cannot be patched"
                )
            else:
                shown = model or "<model>"
                why = (
                    f"unsupported model {model or '(not named)'} and no fallback for it: set "
                    f'[repair] model_fallback_map = {{{_toml_key(shown)} = "<a supported model>"}}'
                )
            self.event("model_fallback", False, why, model=model, log_line=line[:500], **also)
            return None
        path, old = found
        new = fallbacks[old]
        if new == old:
            self.event("model_fallback", False, f"model_fallback_map maps {old!r} to itself")
            return None
        patched = _patched(params, path, new)
        folder = self.state / "autofix_configs"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / f"{self.trial.id}.json"
        _write_json(config, patched)
        note = f"model {old} unsupported: retry with {new}"
        self.event(
            "model_fallback",
            True,
            note,
            model=old,
            fallback=new,
            param=".".join(path),
            config=str(config),
            log_line=line[:500],
            **also,
        )
        return Retry(patched, note=note)

    # ------------------------------------------------------------------ install
    def _install(self, module: str) -> Retry | None:
        plan = self._plan(module)
        if plan is None:
            return None
        python = self._python()
        if python is None:
            return None
        ledger = _Ledger(self.state / "repair" / "ledger.json")
        top = module.split(".")[0]
        done = ledger.find(python, module=top)
        if done is not None:
            if self._started_before(done):  # failed before the install landed: retry it
                note = f"module {top} was installed ({done['requirement']}) while this ran"
                self.event("install", True, note + "; no new install", module=top,
                           requirement=done["requirement"], python=python,
                           installed_for_trial=done.get("trial"))  # fmt: skip
                return Retry(dict(self.trial.params), note=note)
            if done["requirement"] == plan.requirement:  # (a changed mapping is tried)
                self.event(
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
            self.event(
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

        steps = self._clone(plan) if plan.clone is not None else []
        if all(s.ok for s in steps):
            pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            steps.append(_run([*pip, *self._pip_args(plan)], self.lab, self._env()))
        ok = all(s.ok for s in steps)
        ledger.add(python, plan, ok, getattr(self.trial, "id", None))
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
        self.event(
            "install",
            ok,
            note,
            module=top,
            missing=module,
            source=plan.source,
            requirement=plan.requirement,
            python=python,
            **last.data(),
            steps=[s.data() for s in steps],
        )
        return Retry(dict(self.trial.params), note=note) if ok else None

    def _plan(self, module: str) -> _Plan | None:
        """What to install for `module` (its longest mapped prefix first); None, with an
        event saying how to configure it, when nothing is configured."""
        rc = self.rc
        top = module.split(".")[0]
        names = _prefixes(module)
        for name in names:
            if name in rc.module_package_map:
                return _Plan(top, "module_package_map", rc.module_package_map[name])
        for name in names:
            if name in rc.module_alias_map:
                alias = rc.module_alias_map[name]
                req = rc.module_package_map.get(alias, alias)
                return _Plan(top, "module_alias_map", req)
        for name in names:
            if name in rc.module_clone_map:
                spec = rc.module_clone_map[name]
                if isinstance(spec, str):  # a bare repository
                    spec = CloneSpec(repo=spec)
                origin = self._origin(spec.repo)
                req = origin + (f"@{spec.ref}" if spec.ref else "")
                req += f"#subdirectory={spec.subdir}" if spec.subdir else ""
                return _Plan(top, "module_clone_map", req, clone=spec)
        key = _toml_key(top)
        hint = (
            f'set [repair] module_package_map = {{{key} = "<pip requirement>"}} '
            f'(or module_alias_map = {{{key} = "<module>"}}, or module_clone_map = '
            f'{{{key} = {{repo = "<git url>"}}}}'
        )
        if not rc.allow_direct_module_install:
            self.event(
                "none",
                False,
                f"no module named {module!r} and no install configured for it: {hint}, "
                "or allow_direct_module_install = true)",
                module=top,
                missing=module,
            )
            return None
        if (self.lab / top).is_dir() or (self.lab / f"{top}.py").is_file():
            self.event(
                "none",
                False,
                f"no module named {module!r}, but the lab has {top} itself: an import path "
                f"problem, not a missing package (nothing installed); otherwise {hint})",
                module=top,
                missing=module,
            )
            return None
        return _Plan(top, "direct", KNOWN_PACKAGES.get(top, top))

    def _python(self) -> str | None:
        """The training environment's interpreter, or None (with an event) when missing."""
        python = self.rc.python or sys.executable
        found = self.rc.interpreter(self.lab)
        if found is None:
            self.event(
                "install",
                False,
                f"[repair] python = {python!r} is not an executable interpreter: nothing installed",
                python=python,
            )
        return found

    def _started_before(self, done: dict[str, Any]) -> bool:
        started = getattr(self.trial, "started_at", None)
        return isinstance(started, int | float) and started < done.get("ts", 0)

    def _env(self) -> dict[str, str]:
        """The trials' environment (agents' keys scrubbed), never prompting for input."""
        env = trial_env(self.cfg)
        env.update(GIT_TERMINAL_PROMPT="0", PIP_NO_INPUT="1")
        return env

    # ------------------------------------------------------------------ clones
    def _origin(self, repo: str) -> str:
        """A repository URL as given, or a local path made absolute (relative to the lab)."""
        if URLISH.match(repo):
            return repo
        path = Path(repo).expanduser()
        path = path if path.is_absolute() else self.lab / path
        return str(path.resolve()) if path.exists() else repo

    def _clone_dir(self, plan: _Plan) -> Path:
        return self.state / "repair" / "clones" / plan.module

    def _clone(self, plan: _Plan) -> list[_Step]:
        spec = plan.clone
        assert spec is not None
        dest = self._clone_dir(plan)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        env = self._env()
        steps = [_run(["git", "clone", "--quiet", "--", self._origin(spec.repo), str(dest)],
                      self.lab, env)]  # fmt: skip
        if steps[-1].ok and spec.ref:
            steps.append(_run(["git", "-C", str(dest), "checkout", "--quiet", spec.ref],
                              self.lab, env))  # fmt: skip
        if steps[-1].ok and spec.subdir:
            target = (dest / spec.subdir).resolve()
            if not target.is_relative_to(dest.resolve()) or not target.is_dir():
                why = f"subdir {spec.subdir!r} is not a folder of the clone"
                steps.append(_Step(["test", "-d", str(target)], 1, 0.0, why))
        return steps

    def _pip_args(self, plan: _Plan) -> list[str]:
        if plan.clone is not None:
            target = self._clone_dir(plan)
            if plan.clone.subdir:
                target = target / plan.clone.subdir
            return ["-e", str(target)] if plan.clone.editable else [str(target)]
        if plan.source == "direct":  # a guessed name: wheels only, no build code runs
            return ["--only-binary", ":all:", plan.requirement]
        tokens = shlex.split(plan.requirement)
        # "torch --index-url URL": a requirement with pip options; else one requirement,
        # spaces included ("pkg >= 1.0")
        return tokens if any(t.startswith("-") for t in tokens) else [plan.requirement]


# ---------------------------------------------------------------------- helpers
def missing_module(texts: list[str]) -> str | None:
    """The module of the last `No module named 'X'` in the first text that has one."""
    for text in texts:
        found = MISSING_MODULE.findall(text)
        if found:
            return found[-1]
    return None


def model_params(params: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """The parameters that name a model — (key path, value) of the string values under
    model.name, model_name, model, then any *.name / *_name key (nested dicts as dotted keys),
    most likely first."""
    found = [
        (path, value)
        for path, value in _leaves(params)
        if isinstance(value, str) and _is_model_key(".".join(path))
    ]

    def rank(item: tuple[tuple[str, ...], str]) -> int:
        key = ".".join(item[0])
        return MODEL_KEYS.index(key) if key in MODEL_KEYS else len(MODEL_KEYS)

    return sorted(found, key=rank)


def _is_model_key(key: str) -> bool:
    return key in MODEL_KEYS or key.endswith((".name", "_name"))


def _leaves(
    data: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            yield from _leaves(value, path)
        else:
            yield path, value


def _patched(params: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = dict(params)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _patched(params[path[0]], path[1:], value)
    return out


def _prefixes(module: str) -> list[str]:
    """'a.b.c' → ['a.b.c', 'a.b', 'a']."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _compile(pattern: str) -> re.Pattern[str]:
    """A configured pattern as a regex; one that is not valid regex matches literally."""
    try:
        return re.compile(pattern)
    except re.error:
        return re.compile(re.escape(pattern))


def _read_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - STDERR_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> _Step:
    """Run `command` (its own process group, killed whole at the timeout), output captured."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return _Step(command, 127, time.monotonic() - start, f"{type(exc).__name__}: {exc}")
    try:
        out, _ = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, _ = proc.communicate()
        code = None
    text = out.decode("utf-8", errors="replace")
    return _Step(command, code, time.monotonic() - start, text)


class _Ledger:
    """`.nightlab/repair/ledger.json`: every install tried in this lab, so that none is
    tried twice for the same interpreter."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
            self.installs: list[dict[str, Any]] = list(data.get("installs", []))
        except (OSError, ValueError, AttributeError):
            self.installs = []

    def find(
        self, python: str, *, module: str | None = None, requirement: str | None = None
    ) -> dict[str, Any] | None:
        """The latest install for this interpreter of `module` (successful ones only) or
        of `requirement` (any outcome)."""
        for entry in reversed(self.installs):
            if entry.get("python") != python:
                continue
            if module is not None and entry.get("module") == module and entry.get("ok"):
                return entry
            if requirement is not None and entry.get("requirement") == requirement:
                return entry
        return None

    def add(self, python: str, plan: _Plan, ok: bool, trial: int | None) -> None:
        self.installs.append(
            {
                "python": python,
                "module": plan.module,
                "requirement": plan.requirement,
                "source": plan.source,
                "ok": ok,
                "trial": trial,
                "ts": time.time(),
            }
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(self.path, {"installs": self.installs})
