"""The report's judgement: what went wrong (Challenges) and what to do next
(Recommendations), derived from the night's data, never from a template of advice.

A recommendation names only what the lab can change: a `[search]` knob, nightlab's own
settings, or code dimensions when an agent may edit code; never a parameter outside the
search space (a seed, a dataset switch), however well it correlates with the objective."""

from __future__ import annotations

from collections import Counter
from typing import Any, get_args

from nightlab.ratchet import finite
from nightlab.report.candidates import Candidate
from nightlab.report.data import Night
from nightlab.report.doc import Bullets, Para, Section, Table
from nightlab.store import fmt

MAX_ROWS = 15
HIGH_NOISE = 0.02  # baseline σ above 2 % of its mean: noisy enough to say so


def _short(text: str | None, n: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def near_misses(night: Night) -> list[dict[str, Any]]:
    """Trials discarded at the screen that did improve on the best of their moment, but not
    beyond their screening threshold (their own verdict's figures)."""
    out = []
    for t in night.trials:
        j = t.get("judgement") or {}
        gain, limit = j.get("improvement"), j.get("threshold")
        if t["verdict"] == "discarded" and finite(gain) and finite(limit) and 0 < gain <= limit:
            out.append({**t, "improvement": gain, "threshold": limit})
    return out


def not_confirmed_text(night: Night, t: dict[str, Any]) -> str:
    """`4 (selection run 1.99; confirmed 1.005, n=2: +0.005 vs threshold 0.029)`."""
    j = t.get("judgement") or {}
    picked = "" if t["objective"] is None else f"selection run {fmt.value(t['objective'])}; "
    if "reason" in j or not all(finite(j.get(k)) for k in ("value", "improvement", "threshold")):
        return f"{t['id']} ({picked}{_short(j.get('reason') or 'no figures recorded', 100)})"
    return (
        f"{t['id']} ({picked}confirmed {fmt.value(j['value'])}, n={j.get('n')}: "
        f"{j['improvement']:+.3g} vs threshold {j['threshold']:.3g})"
    )


def challenges(night: Night) -> Section:
    section = Section("Challenges")
    failed = night.failures()
    if failed:
        rows = [
            [str(t["id"]), t["status"], _short(t["reason"] or "no reason recorded", 120),
             t["dimension"] or "—", _short(t["hypothesis"], 80) or "—"]
            for t in failed[:MAX_ROWS]
        ]  # fmt: skip
        section.add(
            Para(f"**{len(failed)} trial(s) failed, timed out or were killed:**"),
            Table(["trial", "status", "reason", "dimension", "hypothesis"], rows),
        )
        if len(failed) > MAX_ROWS:
            section.add(Para(f"… and {len(failed) - MAX_ROWS} more (see `nightlab status`)."))
    rejected = night.rejections()
    if rejected:
        reasons = Counter(r for d in rejected for r in (d["reasons"] or ["no reason recorded"]))
        items = [f"{_short(r)} ({n}×)" for r, n in reasons.most_common(10)]
        section.add(Para(f"**The gate rejected {len(rejected)} decision(s)** (made waits):"))
        section.add(Bullets(items))
    off = [e for e in night.mentor if e["data"].get("verdict") == "off_track"]
    if off:
        section.add(Para(f"**The mentor judged the night off track {len(off)} time(s):**"))
        section.add(Bullets([_short(e["data"].get("critique"), 200) for e in off[:MAX_ROWS]]))
    if night.mentor_errors:
        errs = Counter(_short(e["data"].get("error"), 120) for e in night.mentor_errors)
        section.add(Para(f"**The mentor failed {len(night.mentor_errors)} time(s):**"))
        section.add(Bullets([f"{e} ({n}×)" for e, n in errs.most_common(5)]))
    crashed = [r for r in night.runs if r["state"] == "crashed"]
    if crashed:
        section.add(Para("**Runs that crashed:**"))
        section.add(Bullets([f"run {r['id']}: {_short(r['end_reason'])}" for r in crashed]))
    misses = near_misses(night)
    if misses:
        section.add(
            Para(
                f"**{len(misses)} trial(s) improved on their base but stayed inside the noise "
                "band** and were discarded at the screen: "
                + ", ".join(
                    f"{t['id']} (+{t['improvement']:.3g} vs {t['threshold']:.3g})"
                    for t in misses[:10]
                )
                + "."
            )
        )
    avoided = night.false_keeps_avoided()
    if avoided:
        section.add(
            Para(
                f"**{len(avoided)} trial(s) passed the screen but not the confirmation** "
                "(not_confirmed; false keeps avoided): their selection run was luckier than "
                "their code: "
                + "; ".join(not_confirmed_text(night, t) for t in avoided[:MAX_ROWS])
                + "."
            )
        )
    if not section.blocks:
        section.add(Para("No trial failed, the gate rejected nothing and no run crashed."))
    return section


def reached(night: Night, pick: Candidate) -> bool:
    """Whether the pick's mean meets the lab's `[objective] target` (False without one)."""
    target = night.cfg.objective.target
    if target is None or pick.mean is None:
        return False
    return pick.mean == target or night.better(pick.mean, target)


def edits_code(night: Night) -> bool:
    """Whether the night's worker may change code: an agent (not the `search` worker, which
    only sets knobs) with something editable (`[trial] editable`, `spec`, `generated`)."""
    return night.cfg.agents.worker != "search" and bool(night.cfg.editable_files)


def _dimensions(night: Night) -> list[str]:
    """The dimensions a worker can still change in this lab: none without an agent that
    edits code; never `evaluation` where the lab fixed it (`[trial] evaluate`/`protected`)."""
    from nightlab.agents.decision import Dimension

    if not edits_code(night):
        return []
    sealed = bool(night.cfg.trial.evaluate or night.cfg.trial.protected)
    return [d for d in get_args(Dimension) if not (sealed and d == "evaluation")]


def _edge(night: Night, params: dict[str, Any]) -> list[str]:
    out = []
    for name, knob in night.cfg.search.items():
        value = params.get(name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if knob.kind == "categorical" or not numeric or value == knob.default:
            continue  # a default at the edge is the user's choice, not the search's
        if value <= knob.low or value >= knob.high:
            side, bound = ("lower", knob.low) if value <= knob.low else ("upper", knob.high)
            out.append(
                f"`{name}` = {value:g} sits at its {side} clamp ({bound:g}) in the final pick: "
                f"widen `[search.{name}]` beyond it (the optimum may lie outside)."
            )
    return out


def recommendations(night: Night, pick: Candidate | None, ranked: list[Candidate]) -> Section:
    recs: list[str] = []
    kept = night.kept()
    trials = [t for t in night.trials if t["kind"] != "baseline"]
    if night.baseline is None:
        recs.append(
            "Make the baseline run: no repeat of the unmodified code produced an objective, so "
            "nothing can be compared (see the failures above and the trial's `stderr.log`)."
        )
    elif not kept:
        noise = night.noise
        sigma = f"σ = {noise.sigma:.3g}, df {noise.df}" if noise.df else "σ unknown"
        elsewhere = "dimensions the night has not touched" if edits_code(night) else (
            "other regions of the `[search]` space")  # fmt: skip
        recs.append(
            f"Nothing beat the baseline by more than the threshold ({sigma} at the end of the "
            f"night): try larger steps, or {elsewhere}."
        )
    waiting = night.screened()
    if waiting:
        recs.append(
            f"Trial(s) {', '.join(str(t['id']) for t in waiting)} passed the screen but the "
            "night stopped before their confirmation runs: run the night again "
            "(`nightlab run`) to confirm or dismiss them."
        )
    tried = {t["dimension"] for t in trials if t["dimension"]}
    untried = [d for d in _dimensions(night) if d not in tried]
    if trials and untried:
        recs.append("Untried dimensions: " + ", ".join(f"`{d}`" for d in untried) + ".")
    if pick is not None and pick.kind != "baseline":
        recs += _edge(night, pick.first["params"])
    defaults = night.cfg.defaults()
    never = [
        k for k in night.cfg.search
        if trials and all(t["params"].get(k, defaults[k]) == defaults[k] for t in trials)
    ]  # fmt: skip
    if never:
        recs.append(
            "Knobs never varied: " + ", ".join(f"`{k}`" for k in never) + " (search them next)."
        )
    base = night.baseline
    if base is not None:
        if base["n"] < 3:
            recs.append(
                f"The noise comes from {base['n']} baseline run(s): raise `[ratchet] "
                "baseline_repeats` to 3 or more for an honest threshold."
            )
        mean = abs(base["objective"]) or 1.0
        sd = night.noise.sd if night.noise.df else base["sigma"]
        if sd / mean > HIGH_NOISE:
            recs.append(
                f"The noise is high (pooled sd {sd:.3g}, {100 * sd / mean:.1f}% of the "
                "baseline): raise `[ratchet] confirm_runs` so each verdict averages more runs."
            )
    misses = near_misses(night)
    if misses:
        recs.append(
            f"{len(misses)} discarded trial(s) improved within the noise band: repeat them over "
            "more seeds before dismissing them (a single run cannot tell)."
        )
    if pick is not None and pick.kind != "baseline" and pick.n < 2:
        rests = "one seed" if not pick.confirmed else "one run on a new seed"
        recs.append(
            f"The final pick (trial {pick.first['id']}) rests on {rests}: confirm it over "
            "several seeds before relying on it (`[ratchet] confirm_runs`, finish-up "
            "`final_rounds`)."
        )
    failed = night.failures()
    if failed and len(failed) >= max(2, len(night.trials) // 4):
        reason, n = Counter(t["reason"] or "unknown" for t in failed).most_common(1)[0]
        recs.append(f"Fix the most common failure first: {_short(reason, 120)} ({n}×).")
    rejected = night.rejections()
    if len(rejected) >= 3 and len(rejected) * 4 >= len(night.decisions):
        reason = Counter(r for d in rejected for r in d["reasons"]).most_common(1)
        top = f" (most often: {_short(reason[0][0], 100)})" if reason else ""
        recs.append(
            f"The gate rejected {len(rejected)} of {len(night.decisions)} decisions{top}: "
            "sharpen the worker's mission."
        )
    target = night.cfg.objective.target
    if target is not None and pick is not None and not reached(night, pick):
        recs.append(f"The target {target:g} is not reached yet ({fmt.value(pick.mean)}): continue.")
    if kept and pick is not None and pick.kind != "baseline":
        recs.append(f"Adopt the final pick into your branch: `nightlab adopt {pick.first['id']}`.")
    if not recs:
        recs.append("Continue the search: the data point to no specific weakness.")
    return Section("Recommendations").add(Bullets(recs))
