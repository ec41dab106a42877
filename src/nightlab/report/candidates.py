"""Candidates: trials that ran the same code (the same git tree) with the same parameters are
one candidate, whatever their seeds (baseline repeats, confirmation runs). A candidate's
figure is its confirmed mean: the mean over its runs on new seeds, leaving out the selection
run (the worker's trial that proposed it, picked for being high); a candidate with no other
run has only that single run, and ranks after every confirmed one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from nightlab import ratchet
from nightlab.ratchet import finite
from nightlab.report.data import TEST_KIND, Night
from nightlab.report.doc import Linked
from nightlab.report.links import Link
from nightlab.store import fmt
from nightlab.store.paths import DIFF
from nightlab.trials.workspace import diff_numstat, tree_ids

PARAM_DIGITS = 3  # as the terminal's leaderboard rounds parameters
_DIFF_FILE = re.compile(r"^diff --git a/(.+?) b/(.+)$")


@dataclass
class Candidate:
    """One code version and parameter set, with every trial that ran it."""

    trials: list[dict[str, Any]]  # all runs (any status), id order
    rank: int = 0
    diff: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    final_pick: bool = False
    links: list[Link] = field(default_factory=list)  # of its first trial: MLflow, logs, diff
    values: list[float] = field(init=False)  # the evidence: every run but the selection run
    selection: float | None = field(init=False)

    def __post_init__(self) -> None:
        runs = [(t["kind"], t["objective"]) for t in self.scored]
        self.selection, self.values = ratchet.split_runs(runs)

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "succeeded" and finite(t["objective"])]

    @property
    def first(self) -> dict[str, Any]:
        """The trial that introduced this candidate (its id names the candidate)."""
        return self.trials[0]

    @property
    def ids(self) -> list[int]:
        return [t["id"] for t in self.trials]

    @property
    def seeds(self) -> list[int]:
        return sorted({t["seed"] for t in self.scored})

    @property
    def confirmed(self) -> bool:
        """It ran on seeds nobody chose it for (the baseline always has)."""
        return bool(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """The confirmed mean; the selection run alone when there is nothing else."""
        if self.values:
            return ratchet.mean(self.values)
        return self.selection

    @property
    def sd(self) -> float | None:
        if len(self.values) < 2:
            return None
        sd = ratchet.spread(self.values)
        return sd if math.isfinite(sd) else None

    @property
    def kind(self) -> str:
        return "baseline" if any(t["kind"] == "baseline" for t in self.trials) else "trial"

    @property
    def verdict(self) -> str | None:
        verdicts = [t["verdict"] for t in self.trials if t["verdict"]]
        for v in ("kept", "baseline", "screened", "not_confirmed"):
            if v in verdicts:
                return v
        return verdicts[0] if verdicts else None

    @property
    def judgement(self) -> dict[str, Any] | None:
        """The ratchet's record of the trial that introduced it (None: never judged)."""
        return self.first.get("judgement")

    @property
    def mlflow_run_ids(self) -> list[str]:
        return [t["mlflow_run_id"] for t in self.trials if t["mlflow_run_id"]]

    def links_text(self) -> Linked:
        """Its links as Markdown (`[stdout](../../trials/4/stdout.log) · …`), or `—`; tags in
        the HTML."""
        return Linked([(link.label, link.href) for link in self.links])

    def figure(self, digits: int = 4) -> str:
        """`mean ± sd (n=…)`, or the single run, rounded as the terminal rounds them."""
        if self.mean is None:
            return "—"
        if not self.confirmed:
            return f"{fmt.value(self.mean, digits)} (single run)"
        return f"{self.estimate(digits)} (n={self.n})"

    def estimate(self, digits: int = 4) -> str:
        """`mean ± sd` (the mean alone without a spread), without n."""
        if self.mean is None:
            return "—"
        sd = "" if self.sd is None else f" ± {fmt.value(self.sd, digits)}"
        return f"{fmt.value(self.mean, digits)}{sd}"

    def selection_text(self, digits: int = 4) -> str:
        """The selection run as a number, or `—` (the baseline has none)."""
        return "—" if self.selection is None else fmt.value(self.selection, digits)


def group(night: Night) -> list[Candidate]:
    """Every finished trial in a candidate; candidates in order of first appearance.
    Finish-up's test run is no candidate's evidence: it repeats a seed of the final pick."""
    finished = [t for t in night.trials if t["status"] != "running" and t["kind"] != TEST_KIND]
    trees = tree_ids(night.lab, [t["commit"] for t in finished])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in finished:
        key = (trees.get(t["commit"], t["commit"]), json.dumps(t["params"], sort_keys=True))
        groups.setdefault(key, []).append(t)
    return [Candidate(trials) for trials in groups.values()]


def rank(night: Night, candidates: list[Candidate]) -> list[Candidate]:
    """Candidates with a figure: the confirmed ones first, by confirmed mean in the lab's
    direction, then the single runs (ties: earlier trial first); each gets its `rank`."""
    scored = [c for c in candidates if c.mean is not None]
    sign = ratchet.sign(night.direction)
    scored.sort(key=lambda c: (not c.confirmed, -sign * c.mean, c.first["id"]))
    for i, c in enumerate(scored, 1):
        c.rank = i
    return scored


def diff_summary(night: Night, trial: dict[str, Any]) -> dict[str, Any] | None:
    """Files changed and lines added/removed by a trial's code against the night's base:
    from its folder's `diff.patch`, else from git; None when neither is there."""
    patch = night.paths.trial(trial["id"]) / DIFF
    if patch.is_file():
        return parse_patch(patch.read_text(errors="replace"))
    base = night.meta.get("base_commit")
    if not base:
        return None
    numstat = diff_numstat(night.lab, str(base), trial["commit"])
    if numstat is None:
        return None
    files, added, removed = [], 0, 0
    for line in numstat.splitlines():
        a, r, name = line.split("\t", 2)
        files.append(name)
        added += int(a) if a.isdigit() else 0  # binary files count as "-"
        removed += int(r) if r.isdigit() else 0
    return {"files": files, "files_changed": len(files), "added": added, "removed": removed}


def parse_patch(text: str) -> dict[str, Any]:
    """Files and +/- line counts of a unified git diff."""
    files: list[str] = []
    added = removed = 0
    for line in text.splitlines():
        if m := _DIFF_FILE.match(line):
            files.append(m.group(2))
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return {"files": files, "files_changed": len(files), "added": added, "removed": removed}


def describe_diff(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return "unknown"
    if not diff["files_changed"]:
        return "no code change"
    n = diff["files_changed"]
    return f"{n} file{'s' if n > 1 else ''} +{diff['added']}/-{diff['removed']}"


def params_text(params: dict[str, Any], sep: str = ", ") -> str:
    """`lr=0.00123, depth=4`: parameters rounded as `nightlab leaderboard` shows them."""
    return sep.join(f"{k}={fmt.value(v, PARAM_DIGITS)}" for k, v in params.items())


def changed_params(night: Night, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that differ from the lab's defaults."""
    defaults = night.cfg.defaults()
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def eligible(c: Candidate) -> bool:
    """A candidate that earned trust: the baseline, or one the ratchet kept (a single lucky
    run is not, nor one its confirmation runs did not bear out)."""
    return c.verdict in ("kept", "baseline")


def final_pick(
    night: Night, ranked: list[Candidate], test: dict[str, Any] | None = None
) -> Candidate:
    """The candidate the night hands over: the one the test figure was computed for, else
    the best confirmed mean among the eligible ones (the baseline and the kept ones).
    `ranked` must not be empty."""
    if test is not None:
        for c in ranked:
            if test["trial"] in c.ids:
                return c
    return next(iter(trusted(night, ranked)), ranked[0])


def trusted(night: Night, ranked: list[Candidate]) -> list[Candidate]:
    """The candidates the night may hand over (the baseline and the kept ones), best mean
    first: a kept one is confirmed unless `confirm_runs = 0`, and then its single run stands,
    as it did for the ratchet."""
    sign = ratchet.sign(night.direction)
    return sorted((c for c in ranked if eligible(c)), key=lambda c: (-sign * c.mean, c.first["id"]))
