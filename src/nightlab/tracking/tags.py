"""The tags nightlab puts on a trial's MLflow run: who it is, what it tried, and the
ratchet's verdict with the figures it was made with (σ, threshold, the confirmed mean), and a
pruned trial's record (the step it was stopped at, its value there, the reference, the rule)."""

from __future__ import annotations

from typing import Any

from nightlab.store.redact import redact_data

_JUDGEMENT = ("stage", "improvement", "threshold", "sigma", "df", "best_trial", "best_mean",
              "best_n", "value", "n", "z", "reason")  # fmt: skip
_PRUNING = {"step": "nightlab.pruned_step", "value": "nightlab.pruned_value",
            "best": "nightlab.pruned_best", "reference": "nightlab.pruned_reference",
            "rule": "nightlab.pruned_rule", "kind": "nightlab.pruned_kind",
            "curves": "nightlab.pruned_curves"}  # fmt: skip


def run_name(night_name: str, trial_id: int) -> str:
    """A trial's run name, unique across nights: `<night date>-<night id>-t<trial id>`."""
    return f"{night_name}-t{trial_id}"


def note(trial: dict[str, Any]) -> str:
    """The run's description (`mlflow.note.content`): the hypothesis, then the verdict."""
    lines = [f"**Hypothesis**: {trial.get('hypothesis') or '(none: ' + trial['kind'] + ')'}"]
    verdict = trial.get("verdict") or trial["status"]
    reason = (trial.get("judgement") or {}).get("reason")
    lines.append(f"**Verdict**: {verdict}" + (f" ({reason})" if reason else ""))
    return "\n\n".join(lines)[:4000]


def trial_tags(trial: dict[str, Any], night_id: str) -> dict[str, str]:
    tags = {
        "mlflow.source.git.commit": trial["commit"],
        "mlflow.note.content": note(trial),
        "nightlab.trial_id": str(trial["id"]),
        "nightlab.night_id": night_id,
        "nightlab.cycle_trace_id": trial["trace_id"],
        "nightlab.kind": trial["kind"],
        "nightlab.status": trial["status"],
        "nightlab.verdict": trial.get("verdict") or "",
        "nightlab.dimension": trial.get("dimension") or "",
        "nightlab.hypothesis": (trial.get("hypothesis") or "")[:4000],
        "nightlab.commit": trial["commit"],
        "nightlab.seed": str(trial["seed"]),
    }
    if trial.get("confirms") is not None:
        tags["nightlab.confirms"] = str(trial["confirms"])
    judgement = trial.get("judgement") or {}
    for key in _JUDGEMENT:
        if judgement.get(key) is not None:
            tags[f"nightlab.ratchet.{key}"] = str(judgement[key])[:4000]
    pruning = trial.get("pruning")
    if trial["status"] == "pruned" and isinstance(pruning, dict):
        for key, tag in _PRUNING.items():
            if pruning.get(key) is not None:
                tags[tag] = str(pruning[key])[:4000]
    return redact_data(tags)
