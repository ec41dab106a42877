"""nightlab.toml → validated pydantic models.

Every key is declared here; an unknown, mistyped or missing key fails at load with a
message naming the key, the file and the fix. The `[search]` knobs are the clamps that
every worker's parameters are checked against; `matches` is the one reading of the
`editable`/`protected`/`generated` globs; `plugin` loads what other packages register.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from nightlab import UserError

CONFIG_NAME = "nightlab.toml"
EXECUTORS = ("local", "slurm")  # built-in `[executor] kind`s; others are plugins


class ConfigError(UserError):
    """A lab's configuration is missing or wrong; the message says what to change."""


class PluginError(UserError):
    """A plugin named in nightlab.toml is not installed or does not load."""


def plugin(group: str, name: str) -> Any:
    """The object a third-party package registers under entry point `group` (e.g.
    `nightlab.workers`) as `name`, loaded."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        known = sorted({ep.name for ep in entry_points(group=group)})
        raise PluginError(
            f"no {group} plugin named {name!r} is installed"
            + (f" (installed: {', '.join(known)})" if known else "")
            + "; pip install the package that provides it, or fix the name"
        )
    ep = found[0]
    try:
        return ep.load()
    except Exception as exc:
        package = ep.dist.name if ep.dist else ep.value.split(":")[0]
        raise PluginError(
            f"the {group} plugin {name!r} (package {package}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def matches(path: str, patterns: list[str]) -> bool:
    """True when the lab-relative `path` matches one of the globs of nightlab.toml
    (`editable`, `protected`, `generated`) and stays inside the lab: one spelling per file
    ("./x", "x/", "a//b" never match), no absolute path, no "..", no .git, no control
    characters."""
    p = PurePosixPath(path)
    if p.as_posix() != path:  # "./x", "x/", "a//b": one spelling per file, or git refuses
        return False
    if p.is_absolute() or ".." in p.parts or "\\" in path or not path.strip():
        return False
    if any(ord(ch) < 32 for ch in path) or any(part.lower() == ".git" for part in p.parts):
        return False
    return any(_glob(pat).fullmatch(path) for pat in patterns)


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """Shell-style: `*` and `?` stay inside one folder, `**` crosses folders."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    rx = {"**": ".*", "**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(rx.get(part, re.escape(part)) for part in parts))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabSection(_Section):
    name: str = Field(min_length=1, description="Display name of the lab; MLflow experiment name.")
    brief: str = Field("IDEA.md", description="The brief the agents read (relative to the lab).")


Direction = Literal["maximize", "minimize"]  # what is better: see nightlab.ratchet.better


class ObjectiveSection(_Section):
    metric: str = Field(min_length=1, description="Metric the trial reports, e.g. val_acc.")
    direction: Direction
    target: float | None = Field(None, description="Stop the night once the best reaches this.")
    reduce: Literal["last", "best"] = Field(
        "last", description="How a trial's metric history becomes its objective."
    )
    test_metric: str | None = Field(
        None,
        description="A held-out metric, computed once for the final pick (NIGHTLAB_TEST=1).",
    )
    test_paths: list[str] = Field(
        default_factory=list,
        description="Lab paths of the held-out test data: absent from every sandbox but the "
        "final pick's test run.",
    )


class TrialSection(_Section):
    command: str = Field(min_length=1, description="Shell command run in the trial's worktree.")
    budget_seconds: float = Field(3600, gt=0, description="Wall-clock limit; killed beyond it.")
    hang_seconds: float | None = Field(
        None, gt=0, description="Kill a trial that prints nothing for this long (off if unset)."
    )
    editable: list[str] = Field(
        default_factory=list, description="Files (globs) agents may edit, relative to the lab."
    )
    params: Literal["json", "hydra", "env"] = Field(
        "json", description="How parameters reach the code."
    )
    share: list[str] = Field(
        default_factory=list,
        description="Lab paths (e.g. untracked data folders) linked into every trial worktree "
        "(read-only in the sandbox).",
    )
    share_writable: list[str] = Field(
        default_factory=list,
        description="The `share` entries trials may also write (e.g. a dataset cache).",
    )
    evaluate: str | None = Field(
        None,
        description="Sealed evaluation: a command run after the training command, in a fresh "
        "sandbox with the base commit's protected files and the trial's artifacts read-only; "
        "the objective comes from it alone.",
    )
    seed: int = Field(0, description="NIGHTLAB_SEED of every trial but the baseline repeats.")
    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap", description="Run trials and coding agents under bubblewrap, or not at all."
    )
    network: bool = Field(False, description="Trials may use the network (in the sandbox).")
    max_rss_mb: float | None = Field(
        None, gt=0, description="Kill a trial whose process tree uses more memory than this."
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="Variables passed to trials although they look secret (*_API_KEY, *_TOKEN…).",
    )
    protected: list[str] = Field(
        default_factory=list,
        description="Files (globs) no decision or trial may change, e.g. the evaluation script.",
    )
    spec: str | None = Field(
        None,
        description="A JSON training spec agents may edit; normalised by the [spec.*] fields "
        "before every trial and passed as NIGHTLAB_SPEC.",
    )
    generated: list[str] = Field(
        default_factory=list,
        description="Globs where agents may write new modules; each is smoke-checked "
        "([smoke]) before a trial uses it.",
    )


class SmokeSection(_Section):
    input_shape: list[int] = Field(
        default_factory=list, description="One example's shape, e.g. [1, 8, 8] (no batch)."
    )
    num_classes: int | None = Field(None, ge=1, description="Logits a generated model returns.")
    batch: int = Field(4, ge=1, description="Batch size of the smoke check's random input.")
    timeout_seconds: float = Field(120, gt=0, description="Limit of one module's check.")


class RatchetSection(_Section):
    """Screen, confirm, keep: see nightlab.ratchet for the rule and its figures."""

    baseline_repeats: int = Field(3, ge=1, le=20, description="Baseline runs over seeds.")
    confirm_runs: int = Field(
        2, ge=0, le=20,
        description="Runs on new seeds of a trial that passes the screen; 0 keeps on one run.",
    )  # fmt: skip
    min_delta: float = Field(0.0, ge=0, description="Smallest improvement ever kept.")
    screen_multiplier: float = Field(
        1.0, ge=0, le=100, description="Screen: one run must beat the best by this many σ."
    )
    sigma_multiplier: float = Field(
        2.0, ge=0, le=100, description="Keep: the confirmed mean must win by this many σ (z)."
    )
    sigma_confidence: float = Field(
        0.8, ge=0.5, lt=1.0, description="σ is this upper confidence bound of the pooled sd."
    )


class Knob(_Section):
    """One searchable parameter; its range is a clamp for every worker."""

    low: int | float | None = None  # int first: `low = 4` keeps the knob integer
    high: int | float | None = None
    log: bool = False
    type: Literal["float", "int", "categorical"] | None = None
    choices: list[Any] | None = None
    default: Any = Field(  # None (TOML has no null): left out; filled by Config.with_defaults
        None,
        description='The baseline\'s value; with [trial] params = "hydra" it may be left out: '
        "the project's composed config (--cfg job --resolve) gives it.",
    )

    @model_validator(mode="after")
    def _check(self) -> Knob:
        for key in ("low", "high", "default"):  # TOML integers are unbounded; floats are not
            value = getattr(self, key)
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
                raise ValueError(f"`{key}` = {value} is too large for a parameter")
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("give either `choices` or `low`/`high`, not both")
            if not self.choices:
                raise ValueError("`choices` is empty")
            if self.default is not None and self.default not in self.choices:
                raise ValueError(f"default {self.default!r} is not one of {self.choices}")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs `low` and `high` (or `choices`)")
        if not self.low < self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("`log = true` needs `low` > 0")
        if self.type == "categorical":
            raise ValueError('type = "categorical" needs `choices`')
        if self.default is not None and self.violation(self.default):
            raise ValueError(f"default: {self.violation(self.default)}")
        return self

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        if self.type:
            return self.type
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        return "int" if ints else "float"

    def choice(self, value: Any) -> Any:
        """The choice `value` stands for (64.0 is the choice 64), or None when none."""
        for c in self.choices or []:  # True == 1 in Python; not here
            if c == value and isinstance(c, bool) == isinstance(value, bool):
                return c
        return None

    def violation(self, value: Any) -> str | None:
        """Why `value` breaks this knob's clamp, or None when it is allowed."""
        if self.kind == "categorical":
            known = self.choice(value) is not None or (value is None and None in self.choices)
            return None if known else f"{value!r} not in {self.choices}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if self.kind == "int" and not float(value).is_integer():
            return f"{value!r} is not an integer"
        if not math.isfinite(value) or not (self.low <= value <= self.high):
            return f"{value!r} outside [{self.low:g}, {self.high:g}]"
        return None


class SearchSettings(_Section):
    """The scalar keys of `[search]` (its tables are the knobs): how the `search` worker
    samples. Not persisted: the lab's Optuna study keeps the trials, the sampler is rebuilt
    from these at every start."""

    sampler: Literal["tpe", "gp", "cmaes", "random"] = Field(
        "tpe", description="Optuna's sampler: TPE, a Gaussian process, CMA-ES or random."
    )
    startup_trials: int = Field(
        5, ge=0, le=10_000, description="Random proposals before the model-based sampler leads."
    )
    multivariate: bool = Field(
        False, description="TPE: model the knobs jointly (Optuna's multivariate TPE)."
    )

    @model_validator(mode="after")
    def _tpe_only(self) -> SearchSettings:
        if self.multivariate and self.sampler != "tpe":
            raise ValueError(f'multivariate = true is for sampler = "tpe", not {self.sampler!r}')
        return self


class PruningSection(_Section):
    """Stopping a trial whose live curve is clearly worse than the others' at the same step."""

    kind: Literal["median", "percentile", "hyperband", "none"] = Field(
        "median", description="Optuna's pruner; none: every trial runs to its end."
    )
    warmup_steps: int = Field(2, ge=0, le=2**31, description="Never prune before this step.")
    min_trials: int = Field(
        3, ge=1, le=10_000, description="Compare only when this many curves reached the step."
    )
    percentile: float = Field(
        25.0, gt=0.0, lt=100.0, description='"percentile": prune below this percentile.'
    )


class LiteratureSection(_Section):
    """Paper search for the `research` action, the agents' tools and `nightlab papers`."""

    sources: list[Literal["arxiv", "openalex", "semanticscholar"]] = Field(
        default_factory=lambda: ["arxiv", "openalex"], min_length=1,
        description="The services searched, in this order.",
    )  # fmt: skip
    max_results: int = Field(8, ge=1, le=100, description="Papers per query and source.")
    cache_days: float = Field(
        30, ge=0, le=36500, description="A query answered this recently costs no request."
    )
    offline: bool = Field(False, description="The cache only, never the network.")
    arxiv_url: str | None = Field(None, description="Base URL of the arXiv API (a mirror).")
    openalex_url: str | None = Field(None, description="Base URL of the OpenAlex API.")
    semanticscholar_url: str | None = Field(
        None, description="Base URL of the Semantic Scholar Graph API."
    )

    @field_validator("sources")
    @classmethod
    def _once(cls, sources: list[str]) -> list[str]:
        if len(set(sources)) != len(sources):
            raise ValueError(f"a source is named twice: {sources}")
        return sources

    @field_validator("arxiv_url", "openalex_url", "semanticscholar_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise ValueError("must be an http(s):// base URL without a query")
        return url


SEARCH_SETTINGS = "search_settings"  # where the scalar keys of [search] are validated


class BudgetSection(_Section):
    hours: float | None = Field(None, gt=0, description="Stop the run after this many hours.")
    max_trials: int | None = Field(None, ge=1, description="Stop once the lab holds this many.")
    max_tokens: int | None = Field(None, ge=1, description="Stop once agents used this many.")
    max_usd: float | None = Field(None, gt=0, description="Stop once agents cost this much.")
    finishup_minutes: float | None = Field(
        None, gt=0, description="The night's last minutes are its finish-up (needs hours, "
        "here or --run-hours); as --finishup-minutes, which wins.",
    )  # fmt: skip
    final_rounds: int = Field(
        1, ge=0, description="Finish-up's confirmation runs per candidate (--final-rounds)."
    )
    confirm_top: int = Field(
        3, ge=1, description="How many top candidates finish-up confirms (--confirm-top)."
    )


class Price(_Section):
    """US dollars per million tokens of one model."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class CommandAgent(_Section):
    argv: list[str] = Field(
        min_length=1,
        description="The coding-agent CLI and its arguments; placeholders {prompt}, "
        "{prompt_file}, {decision_file}, {workdir} and {files} (one item: the editable files).",
    )
    timeout_s: float = Field(900.0, gt=0, description="The agent is killed after this long.")


class AgentsSection(_Section):
    worker: str = Field(
        "search",
        description='"search", "replay:FILE", a pydantic-ai model "openai:gpt-4o", a '
        'coding-agent CLI "command:NAME" or a worker plugin "NAME:ARGS" (entry-point group '
        '"nightlab.workers")',
    )
    commands: dict[str, CommandAgent] = Field(
        default_factory=dict,
        description="Coding-agent CLIs by name (codex, claude and aider are built in).",
    )
    mission_file: str | None = Field(
        None, description="Extra instructions for both roles when no role file is given."
    )
    base_url: str | None = Field(None, description="An OpenAI-compatible server for the model.")
    api_key_env: str | None = Field(None, description="Variable holding that server's key.")
    worker_mission: str | None = Field(None, description="Extra instructions for the worker.")
    mentor: str | None = Field(None, description="A model string for the mentor (off if unset).")
    mentor_every: int = Field(4, ge=1, description="Review every this many worker cycles.")
    interaction_mode: Literal["standard", "builder_health_helper"] = Field(
        "standard", description="builder_health_helper: frequent health checks by the mentor."
    )
    mentor_health_every: int = Field(
        2, ge=1, description="In builder_health_helper mode: a health check this often."
    )
    mentor_apply_suggestions: bool = Field(
        False, description="Run the mentor's replacement decision when it gives one."
    )
    mentor_mission: str | None = Field(None, description="Extra instructions for the mentor.")
    mentor_require_literature: bool = Field(
        False, description="A mentor challenge must follow a paper search in that review."
    )
    stall_trials: int = Field(6, ge=1, description="Trials without a kept one: stalled.")
    max_same_errors: int = Field(
        3, ge=1, le=1000,
        description="The worker failing this many times in a row the same way ends the night.",
    )  # fmt: skip
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Per model string: what its tokens cost."
    )


class ExecutorSection(_Section):
    kind: str = Field(
        "local",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description='Where trials run: "local", "slurm", or an installed executor plugin.',
    )
    slots: int = Field(1, ge=1, le=256, description="Trials run in parallel.")
    partition: str | None = Field(None, description="Slurm partition (default: the cluster's).")
    time_minutes: int | None = Field(
        None, ge=1, description="Slurm time limit (default: budget_seconds plus a minute)."
    )
    cpus_per_trial: int = Field(1, ge=1, description="Slurm: CPUs per trial job.")
    gpus_per_trial: int = Field(
        0, ge=0, description="GPUs per trial: a local slot's share (0 = 1), or a Slurm job's."
    )
    gpus: list[int | str] | None = Field(
        None, description="GPU ids local trials may use (default: CUDA_VISIBLE_DEVICES, else all)."
    )
    mem_gb: float | None = Field(None, gt=0, description="Slurm: memory per trial job.")
    max_concurrent: int | None = Field(
        None, ge=1, le=10_000, description="Slurm: jobs at once (default: slots)."
    )
    account: str | None = Field(None, description="Slurm account.")
    qos: str | None = Field(None, description="Slurm QOS.")
    extra_sbatch: list[str] = Field(
        default_factory=list, description='More sbatch options, e.g. ["--constraint=a100"].'
    )
    setup: list[str] = Field(
        default_factory=list, description="Shell lines run in the job before the trial."
    )
    loop_time: int = Field(
        1440, ge=10, le=525_600,
        description="`start --slurm`: the loop job's Slurm time limit in minutes; near it the "
        "loop requeues itself and resumes.",
    )  # fmt: skip
    loop_cpus: int = Field(2, ge=1, le=256, description="`start --slurm`: the loop job's CPUs.")
    loop_mem: float = Field(
        4.0, gt=0, le=4096, description="`start --slurm`: the loop job's memory in GB."
    )


class TrackingSection(_Section):
    enabled: bool = True
    mlflow_uri: str | None = Field(
        None, description="Default: MLFLOW_TRACKING_URI, else sqlite in .nightlab/mlflow.db."
    )
    experiment: str | None = Field(
        None, description="Default: MLFLOW_EXPERIMENT_NAME, else the lab's name."
    )
    ui_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s\"'<>`]+$",
        description="Where your MLflow UI answers (e.g. http://127.0.0.1:5000): the dashboard's "
        "trial page links each trial's run there.",
    )
    trial_run: bool = Field(
        False,
        description="Open each trial's MLflow run before it starts and pass MLFLOW_RUN_ID "
        "and MLFLOW_TRACKING_URI, so the trial logs into it (e.g. Lightning's MLFlowLogger).",
    )


class CloneSpec(_Section):
    repo: str = Field(min_length=1, description="A git URL or path to clone.")
    ref: str | None = Field(None, description="Branch, tag or commit to check out.")
    subdir: str | None = Field(None, description="The package's folder inside the clone.")
    editable: bool = Field(True, description="pip install -e.")


class RepairSection(_Section):
    enabled: bool = Field(True, description="One recovery pass per failed trial.")
    python: str | None = Field(
        None, description="The training environment's interpreter (default: nightlab's)."
    )
    module_package_map: dict[str, str] = Field(
        default_factory=dict, description="Missing module → the pip requirement that brings it."
    )
    module_alias_map: dict[str, str] = Field(
        default_factory=dict, description="Missing module → the module name to install instead."
    )
    module_clone_map: dict[str, CloneSpec] = Field(
        default_factory=dict, description="Missing module → a repository to clone and install."
    )
    allow_direct_module_install: bool = Field(
        False, description="pip install a missing module under its own name when unmapped."
    )
    model_fallback_map: dict[str, str] = Field(
        default_factory=dict, description="Unsupported model name → the model to use instead."
    )
    unsupported_model_patterns: list[str] = Field(
        default_factory=lambda: ["Unsupported model.name"],
        description="Regexes on stderr that mean the model name is not supported.",
    )

    def interpreter(self, lab: Path) -> str | None:
        """The training Python as a runnable path (`python`, default nightlab's; a relative
        path is the lab's), or None when it is not an executable."""
        python = self.python or sys.executable
        if "/" not in python:
            return shutil.which(python)
        path = Path(python).expanduser()
        path = path if path.is_absolute() else Path(lab) / path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None


class ReportSection(_Section):
    auto: bool = Field(True, description="Write the report when a night ends.")
    top_k: int = Field(10, ge=1, le=1000, description="Candidates in the report's leaderboard.")


NOTIFY_EVENTS = ("started", "baseline_failed", "kept", "stalled", "crashed", "budget", "finished")


class NotifySection(_Section):
    """Messages about the night, sent through Apprise (see the README's Notifications)."""

    urls: list[str] = Field(
        default_factory=list,
        description='Apprise URLs to notify, e.g. ["ntfy://ntfy.sh/my-topic"] (checked when '
        "the night starts: one Apprise cannot read stops it, naming the URL), or plugin:NAME "
        "(a notifier registered under the nightlab.notifiers entry points).",
    )
    events: list[str] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS),
        description="The events that send a message (default: all of them).",
    )
    min_interval_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="Least seconds between two messages to one URL; what comes sooner is "
        "held and sent as one (crashed, finished and baseline_failed go out at once).",
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for i, url in enumerate(urls, 1):
            if url.strip().startswith("plugin:"):
                if not re.fullmatch(r"plugin:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", url.strip()):
                    raise ValueError(f"entry {i}: write a notifier plugin as plugin:NAME")
                continue
            if "://" not in url.strip():  # (not shown: it may be a token pasted bare)
                raise ValueError(
                    f"entry {i} is no Apprise URL (SERVICE://...), e.g. ntfy://ntfy.sh/TOPIC, "
                    "slack://TokenA/TokenB/TokenC, mailto://user:pass@example.com, "
                    "json://HOST:PORT/PATH"
                )
        return [url.strip() for url in urls]

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e not in NOTIFY_EVENTS]
        if unknown:
            raise ValueError(
                f"unknown event(s) {', '.join(map(repr, unknown))}; the events are: "
                + ", ".join(NOTIFY_EVENTS)
            )
        return list(dict.fromkeys(events))


class LimitsSection(_Section):
    """Bounded input: what the loop reads of a trial's output. Past any of these the trial
    is killed (`killed`, reason `output_flood: ...` naming the limit) and nothing more of
    its output is read, so the loop's memory stays flat whatever a trial prints."""

    max_line_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Longest line (bytes) of stdout.log, stderr.log or metrics.jsonl; a "
        "longer line is never held in memory.",
    )
    max_metric_name: int = Field(
        200, ge=8, description="Longest metric name (characters) a trial may report."
    )
    max_metric_names: int = Field(
        1000, ge=1, description="Distinct metric names one trial may report."
    )
    max_points: int = Field(
        200_000,
        ge=100,
        description="Metric points (one name, one value) one trial may report in all; the "
        "loop holds them until the trial is recorded (at most about 0.5 KB apiece).",
    )
    max_log_mb: float = Field(
        1024,
        gt=0,
        description="Size (MiB) of stdout.log, stderr.log and metrics.jsonl together.",
    )


class Config(_Section):
    lab: LabSection
    objective: ObjectiveSection
    trial: TrialSection
    ratchet: RatchetSection = RatchetSection()
    search: dict[str, Knob] = Field(default_factory=dict)
    search_settings: SearchSettings = SearchSettings()  # [search]'s scalar keys (see below)
    pruning: PruningSection = PruningSection()
    literature: LiteratureSection = LiteratureSection()
    spec: dict[str, Knob] = Field(default_factory=dict)
    smoke: SmokeSection = SmokeSection()
    budget: BudgetSection = BudgetSection()
    agents: AgentsSection = AgentsSection()
    executor: ExecutorSection = ExecutorSection()
    tracking: TrackingSection = TrackingSection()
    report: ReportSection = ReportSection()
    repair: RepairSection = RepairSection()
    limits: LimitsSection = LimitsSection()
    notify: NotifySection = NotifySection()

    @model_validator(mode="before")
    @classmethod
    def _split_search(cls, raw: Any) -> Any:
        """`[search]` holds the knobs (tables) and the sampler's settings (plain values):
        the plain values are validated as `search_settings`."""
        if not isinstance(raw, dict) or not isinstance(raw.get("search"), dict):
            return raw
        if SEARCH_SETTINGS in raw:
            raise ValueError(f"{SEARCH_SETTINGS} is not a section: write [search] sampler = …")
        knobs = {k: v for k, v in raw["search"].items() if isinstance(v, dict)}
        settings = {k: v for k, v in raw["search"].items() if not isinstance(v, dict)}
        return {**raw, "search": knobs, SEARCH_SETTINGS: settings}

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        unset = self.unset_defaults()
        if unset and self.trial.params != "hydra":
            raise ValueError(
                f"[search.{unset[0]}] needs a `default` (the value the baseline trial uses); "
                'only with [trial] params = "hydra" may it be left out (then it is read from '
                "the project's composed config)"
            )
        for name, knob in self.spec.items():
            if knob.default is None:
                raise ValueError(f"[spec.{name}] needs a `default` (the value the spec starts at)")
        if self.tracking.trial_run and not self.tracking.enabled:
            raise ValueError("[tracking] trial_run = true needs [tracking] enabled = true")
        if bool(self.trial.spec) != bool(self.spec):
            raise ValueError(
                '[trial] spec = "FILE" and its [spec.NAME] fields (low/high or choices, '
                "default) go together: declare both or neither"
            )
        for name in self.spec:
            if any(other.startswith(name + ".") for other in self.spec):
                raise ValueError(f"[spec] {name!r} is both a field and a group of fields")
        if self.trial.generated and not (self.smoke.input_shape and self.smoke.num_classes):
            raise ValueError(
                "[trial] generated needs [smoke] input_shape (e.g. [1, 8, 8]) and num_classes "
                "to check a generated module before a trial uses it"
            )
        return self

    @property
    def editable_files(self) -> list[str]:
        """What agents may write: `[trial] editable`, the spec and the generated globs."""
        spec = [self.trial.spec] if self.trial.spec else []
        return [*self.trial.editable, *spec, *self.trial.generated]

    def defaults(self) -> dict[str, Any]:
        return {name: knob.default for name, knob in self.search.items()}

    def unset_defaults(self) -> list[str]:
        """The knobs whose `default` nightlab.toml leaves out (hydra: the project's config)."""
        return [name for name, knob in self.search.items() if knob.default is None]

    def with_defaults(self, values: dict[str, Any]) -> Config:
        """This config with the unset defaults taken from `values` (knob → value, checked
        against the knob's clamp by the caller); declared defaults stay as they are."""
        search = {
            name: knob.model_copy(update={"default": values[name]})
            if knob.default is None and name in values
            else knob
            for name, knob in self.search.items()
        }
        return self.model_copy(update={"search": search})

    def normalize(self, params: dict[str, Any]) -> dict[str, Any]:
        """Numbers as their knob's kind (5.0 for an int knob is 5; 1 for a float knob is
        1.0; 64.0 for choices [32, 64] is 64), so the same setting is always recorded,
        compared and handed to the trial the same way."""
        out = dict(params)
        for name, value in params.items():
            knob = self.search.get(name)
            if knob is not None and knob.kind == "categorical":
                out[name] = value if (c := knob.choice(value)) is None else c
                continue
            if knob is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if knob.kind == "int" and float(value).is_integer():
                out[name] = int(value)
            elif knob.kind == "float":
                out[name] = float(value)
        return out

    def param_violations(self, params: dict[str, Any]) -> list[str]:
        out = []
        for name, value in params.items():
            knob = self.search.get(name)
            if knob is None:
                out.append(f"unknown parameter {name!r} (declare it under [search.{name}])")
            elif reason := knob.violation(value):
                out.append(f"{name}: {reason}")
        return out


def load_config(lab_dir: Path) -> Config:
    """Read and validate `lab_dir/nightlab.toml`; raise ConfigError with the fix."""
    path = Path(lab_dir) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"no {CONFIG_NAME} in {Path(lab_dir).resolve()}: create a lab with "
            f"`nightlab init {lab_dir}` or point to the folder that holds one"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from exc
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, raw)) from None
    _check_files(cfg, Path(lab_dir), path)
    _check_executor(cfg, path)
    return cfg


def _check_files(cfg: Config, lab: Path, path: Path) -> None:
    brief = lab / cfg.lab.brief
    if not brief.is_file():
        raise ConfigError(
            f"{path}: [lab] brief = {cfg.lab.brief!r} but {brief} does not exist; "
            "write the brief there or change the key"
        )
    for pattern in cfg.trial.editable:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfigError(
                f"{path}: [trial] editable entry {pattern!r} leaves the lab; "
                "use paths relative to the lab folder"
            )
        if not any(ch in pattern for ch in "*?") and not (lab / pattern).is_file():
            raise ConfigError(
                f"{path}: [trial] editable file {pattern!r} does not exist in {lab}; "
                "create it or remove it from the list"
            )
    for entry in cfg.trial.share:
        if not (lab / entry).exists():
            raise ConfigError(
                f"{path}: [trial] share entry {entry!r} does not exist in {lab}; "
                "create it or remove it from the list"
            )
    for entry in cfg.trial.share_writable:
        if entry not in cfg.trial.share:
            raise ConfigError(
                f"{path}: [trial] share_writable entry {entry!r} is not in [trial] share; "
                "list it there too"
            )
    for entry in cfg.objective.test_paths:
        _check_test_path(cfg, lab, path, entry)
    if cfg.trial.evaluate and not cfg.trial.protected:
        raise ConfigError(
            f"{path}: [trial] evaluate runs the base commit's protected files, but [trial] "
            "protected is empty: list the evaluation script (and what it imports) there"
        )


def _check_test_path(cfg: Config, lab: Path, path: Path, entry: str) -> None:
    """A test path is out of every agent's reach: lab-relative or absolute (outside the lab,
    e.g. /data/test), never through "..", and no `editable`/`generated` glob matches it or
    a file in it (an agent would read it with its tools, or rewrite the labels the final
    test run uses)."""
    where = Path(entry)
    if not entry.strip() or ".." in where.parts:
        raise ConfigError(
            f"{path}: [objective] test_paths entry {entry!r} is no plain path: write it "
            "relative to the lab folder (or absolute, outside it), without '..'"
        )
    if where.is_absolute():
        if where.resolve().is_relative_to(lab.resolve()):
            raise ConfigError(
                f"{path}: [objective] test_paths entry {entry!r} is inside the lab: write it "
                f"relative to {lab}"
            )
        return
    files = [where.as_posix()]
    if (lab / where).is_dir():  # its files as agents would name them (the first 10,000)
        found = itertools.islice((lab / where).rglob("*"), 10_000)
        files += [f.relative_to(lab).as_posix() for f in found if f.is_file()]
    if hit := next((f for f in files if matches(f, cfg.editable_files)), None):
        raise ConfigError(
            f"{path}: [objective] test_paths entry {entry!r} is editable ({hit!r} matches "
            "[trial] editable, spec or generated): an agent could read the held-out test "
            "data or rewrite it; narrow those globs"
        )


def _check_executor(cfg: Config, path: Path) -> None:
    """A kind that is neither built in nor registered by an installed plugin fails now (the
    plugin itself is only imported when the night starts)."""
    from importlib.metadata import entry_points

    kind = cfg.executor.kind
    if kind in EXECUTORS:
        return
    plugins = sorted({ep.name for ep in entry_points(group="nightlab.executors")})
    if kind not in plugins:
        hint = difflib.get_close_matches(kind, [*EXECUTORS, *plugins], n=1)
        raise ConfigError(
            f"{path}: [executor] kind = {kind!r} is no executor: "
            + (f"did you mean {hint[0]!r}? " if hint else "")
            + f"built in: {', '.join(EXECUTORS)}; plugins installed: "
            + (", ".join(plugins) or "none")
            + "; pip install the package that registers it under the entry point group "
            "nightlab.executors"
        )


def _fields_of(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _explain(exc: ValidationError, path: Path, raw: dict[str, Any]) -> str:
    lines = [f"{path} has {exc.error_count()} problem(s):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = _key_name(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            known = _fields_of(model) if model else []
            hint = difflib.get_close_matches(loc[-1], known, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(known)}"
            lines.append(f"  - unknown key {key}: {fix} (remove or rename it)")
        elif kind == "missing":
            lines.append(f"  - missing required key {key}: add it to {path.name}")
        else:
            at = err["loc"]
            got = _value_at(raw, ("search", *at[1:]) if at[:1] == (SEARCH_SETTINGS,) else at)
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if loc[:2] == ["notify", "urls"] else f" (got {got!r})"  # tokens
            lines.append(f"  - {key}: {msg}{shown}; change it in {path.name}")
    return "\n".join(lines)


def _key_name(loc: list[str]) -> str:
    if not loc:
        return "(top level)"
    if len(loc) == 1:
        return f"[{loc[0]}]"
    if loc[0] == SEARCH_SETTINGS:
        return f"[search] {'.'.join(loc[1:])}" if len(loc) > 1 else "[search]"
    if loc[0] == "search" and len(loc) >= 2:
        return f"[search.{loc[1]}]" + (f" {'.'.join(loc[2:])}" if len(loc) > 2 else "")
    return f"[{loc[0]}] {'.'.join(loc[1:])}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    i = 0
    while i < len(loc):
        if model is Config and loc[i] == "search":
            if i + 1 < len(loc):
                model, i = Knob, i + 2
                continue
            return None
        field = model.model_fields.get(loc[i])
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model, i = ann, i + 1
    return model


def _value_at(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(raw, dict) and part in raw:
            raw = raw[part]
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


# ------------------------------------------------------------------------ optional extras
class MissingExtra(ConfigError):
    """A feature the lab selected needs an optional extra of nightlab that is not installed."""


def require(module: str, extra: str, feature: str) -> None:
    """Fail with one line naming the `pip install` to run when `module` (a top-level package
    that nightlab's extra `extra` brings) is not importable; `feature` says what needs it."""
    from importlib.util import find_spec

    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked package counts as missing
        found = False
    if not found:
        raise MissingExtra(f"{feature} needs nightlab[{extra}]: pip install 'nightlab[{extra}]'")


# ------------------------------------------------------------------ the process environment
class Environment(BaseSettings):
    """The environment variables nightlab's own process reads (a trial's environment is
    nightlab's to set); each field is the variable of its name in capitals. Read it with
    `environment()`, fresh per call."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")
    nightlab_plain: bool = Field(
        False, description="Plain output: no colours, no live progress (1/true/yes, 0/false/no)."
    )
    columns: int = Field(
        140, ge=20, le=10_000, description="The line width when stdout is not a terminal."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="The MLflow store when [tracking] mlflow_uri is unset."
    )
    mlflow_experiment_name: str | None = Field(
        None, description="The MLflow experiment when [tracking] experiment is unset."
    )


def environment() -> Environment:
    """The environment, read now; a bad value fails with one line naming the variable."""
    try:
        return Environment()
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]).upper()
        raise ConfigError(
            f"environment variable {name}={os.environ.get(name, '')!r}: {problem['msg']}; "
            "fix it or unset it"
        ) from None
