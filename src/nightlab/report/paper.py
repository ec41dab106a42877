"""`final_paper_report.md`: Summary, Approach, Results, Challenges, Recommendations (the
structure users know from their REPORT.md), built as a `Doc` so the HTML says the same."""

from __future__ import annotations

from typing import Any

from nightlab.report import findings
from nightlab.report.candidates import Candidate, changed_params, describe_diff
from nightlab.report.data import Night
from nightlab.report.doc import Bullets, Doc, Image, Para, Section, Table
from nightlab.report.plots import Plot
from nightlab.report.story import when


def _fig(night: Night, c: Candidate) -> str:
    seeds = len(c.seeds)
    spread = f"mean ± sd over {seeds} seeds" if seeds > 1 else "one seed"
    return f"{night.metric} = **{c.figure()}** ({spread}; validation"


def _label(night: Night, c: Candidate) -> str:
    params = changed_params(night, c.first["params"])
    what = [f"{k}={v}" for k, v in params.items()]
    if c.diff and c.diff["files_changed"]:
        what.append(f"code: {describe_diff(c.diff)}")
    return ", ".join(what) or "the defaults"


def status(night: Night, pick: Candidate | None) -> tuple[str, str]:
    """(Success|Partial|Failed, why)."""
    if night.baseline is None or pick is None:
        return "Failed", "the baseline never produced an objective"
    if not night.kept():
        return "Failed", "no trial beat the baseline by more than the noise threshold"
    if night.cfg.objective.target is not None and not findings.reached(night, pick):
        return "Partial", f"improved, but the target {night.cfg.objective.target:g} is not reached"
    target = night.cfg.objective.target
    return "Success", "the target is reached" if target is not None else "the baseline was beaten"


def summary(
    night: Night, pick: Candidate | None, ranked: list[Candidate], test: dict[str, Any] | None
) -> Section:
    word, why = status(night, pick)
    run = night.last_run()
    items = [f"**Status**: {word} — {why}."]
    if run is not None and run["state"] in ("running", "crashed"):
        items[0] += f" (The night is {run['state']}: {run['end_reason'] or 'no reason yet'}.)"
    base = night.baseline
    base_c = next((c for c in ranked if c.kind == "baseline"), None)
    if pick is None or base is None:
        items.append("**Key Finding**: no comparison is possible without a baseline objective.")
    elif not night.kept():
        best_other = next((c for c in ranked if c.kind != "baseline"), None)
        other = (
            f"; the best other candidate (trial {best_other.first['id']}: "
            f"{_label(night, best_other)}) scored {best_other.figure()}"
            if best_other
            else ""
        )
        items.append(
            f"**Key Finding**: nothing beat the baseline ({base_c.figure() if base_c else '—'} "
            f"over {base['n']} seed(s)) by more than the threshold "
            f"{night.threshold:.3g}{other}."
        )
    elif pick.kind == "baseline":
        items.append(
            f"**Key Finding**: the final pick is the baseline itself (trials "
            f"{', '.join(str(i) for i in pick.ids)}), although {len(night.kept())} trial(s) "
            "were kept along the way."
        )
    else:
        gain = pick.mean - base["objective"]
        items.append(
            f"**Key Finding**: trial {pick.first['id']} ({_label(night, pick)}; "
            f"{pick.first['dimension'] or 'no dimension'}) moved {night.metric} from "
            f"{base['objective']:.4g} to {pick.mean:.4g} ({gain:+.3g}; noise threshold "
            f"{night.threshold:.3g})."
        )
    if pick is not None:
        items.append(
            f"**Best Performance**: {_fig(night, pick)}; trial(s) "
            f"{', '.join(str(i) for i in pick.ids)})."
        )
    if test is not None:
        items.append(
            f"**Held-out test**: {test['metric']} = **{test['value']:.4g}** for trial "
            f"{test['trial']}, computed once for the final pick (selection used validation only)."
        )
    elif night.test_notes:
        note = night.test_notes[-1]
        why = note["data"].get("reason") or note["data"].get("status") or "no reason recorded"
        metric = note["data"].get("metric") or getattr(night.cfg.objective, "test_metric", None)
        items.append(f"**Held-out test**: no {metric or 'test'} figure ({note['kind']}: {why}).")
    if pick is not None and ranked and ranked[0] is not pick:
        top = ranked[0]
        runs = len(top.values)
        items.append(
            f"Note: candidate {top.first['id']} has the best mean ({top.figure()}, {runs} "
            f"run(s)) but was {top.verdict or 'not judged'} and not confirmed; the final pick "
            "is the best candidate the ratchet kept or finish-up confirmed."
        )
    return Section("Summary").add(Bullets(items))


def approach(night: Night) -> Section:
    cfg = night.cfg
    roles = ("baseline", "mentor", "finish-up")  # not workers: nightlab's own decisions
    workers = sorted({d["worker"] for d in night.decisions if d["worker"] not in roles})
    if not workers:
        workers = sorted({r["options"].get("worker") or cfg.agents.worker for r in night.runs})
    obj = cfg.objective
    held = getattr(obj, "test_metric", None)  # declared by labs with a held-out split
    target = f", target {obj.target:g}" if obj.target is not None else ""
    base, r = night.baseline, cfg.ratchet
    noise = (
        "no baseline objective, so no noise estimate"
        if base is None
        else f"σ = {base['sigma']:.3g} over {base['n']} baseline seed(s); threshold "
        f"max(min_delta {r.min_delta:g}, {r.sigma_multiplier:g}σ) = **{night.threshold:.3g}**"
    )
    usage = night.usage
    spent = (
        f"{usage['input_tokens'] + usage['output_tokens']} tokens in {usage['requests']} "
        f"request(s)" + (f", ${usage['usd']:.4f}" if usage["usd"] is not None else "")
    )
    section = Section("Approach").add(
        Bullets(
            [
                f"**Worker**: {', '.join(f'`{w}`' for w in workers) or '—'}; **mentor**: "
                f"{f'`{cfg.agents.mentor}`' if cfg.agents.mentor else 'off'}.",
                f"**Objective**: {obj.direction} `{obj.metric}` (reduce: {obj.reduce}{target})"
                + (f"; held-out test metric `{held}`" if held else "")
                + "; selection uses validation figures only.",
                f"**Trial**: `{cfg.trial.command}` within {cfg.trial.budget_seconds:g} s, "
                f"parameters as {cfg.trial.params}; {cfg.executor.slots} slot(s).",
                f"**Ratchet**: {r.baseline_repeats} baseline repeat(s); {noise}. A trial is "
                "kept only when it beats the current base by more than the threshold.",
                f"**Agent usage**: {spent}.",
            ]
        )
    )
    if cfg.search:
        rows = []
        tried = [t["params"] for t in night.trials if t["kind"] != "baseline"]
        for name, knob in cfg.search.items():
            span = (
                ", ".join(str(c) for c in knob.choices or [])
                if knob.kind == "categorical"
                else f"[{knob.low:g}, {knob.high:g}]" + (" log" if knob.log else "")
            )
            values = {repr(p[name]) for p in tried if name in p}
            rows.append([f"`{name}`", knob.kind, span, str(knob.default), str(len(values))])
        section.add(Para("**Search space** (the clamps every worker must respect):"))
        section.add(Table(["knob", "type", "range / choices", "default", "values tried"], rows))
    return section


def results(
    night: Night, pick: Candidate | None, top: list[Candidate], n_all: int, plots: list[Plot]
) -> Section:
    section = Section("Results")
    counts: dict[str, int] = {}
    for t in night.trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    section.add(
        Para(
            f"{len(night.trials)} trial(s) ("
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f"), {len(night.kept())} kept, {n_all} distinct candidate(s) with an objective"
            + "".join(
                f"; {n} {label}"
                for label, n in (
                    ("confirmation run(s)", sum(t["kind"] == "confirm" for t in night.trials)),
                    ("held-out test run(s)", sum(t["kind"] == "test" for t in night.trials)),
                )
                if n
            )
            + "."
        )
    )
    if top:
        rows = [
            [
                f"{c.rank}{' ★' if c is pick else ''}",
                str(c.first["id"]) + (f" (+{len(c.ids) - 1})" if len(c.ids) > 1 else ""),
                c.figure(),
                str(len(c.seeds)),
                c.verdict or "—",
                c.first["dimension"] or ("baseline" if c.kind == "baseline" else "—"),
                _label(night, c),
            ]
            for c in top
        ]
        header = ["rank", "trial", f"{night.metric} mean ± sd", "seeds", "verdict", "dimension",
                  "change"]  # fmt: skip
        section.add(Para(f"**Top {len(top)} candidates** (★ the final pick):"), Table(header, rows))
    kept = night.kept()
    if kept:
        rows = []
        for t in kept:
            gain = (night.ratchet.get(t["id"]) or {}).get("improvement")
            rows.append(
                [str(t["id"]), f"{t['objective']:.4g}", "—" if gain is None else f"{gain:+.3g}",
                 t["dimension"] or "—", (t["hypothesis"] or "—")[:120]]
            )  # fmt: skip
        section.add(Para("**The ratchet's steps** (each kept trial became the new base):"))
        section.add(Table(["trial", night.metric, "gain", "dimension", "hypothesis"], rows))
    for p in plots:
        if p.file:
            section.add(Image(p.file, p.title))
        else:
            section.add(Para(f"**Plot skipped** — {p.title}: {p.skipped}."))
    return section


def build(
    night: Night,
    pick: Candidate | None,
    ranked: list[Candidate],
    top: list[Candidate],
    plots: list[Plot],
    test: dict[str, Any] | None,
) -> Doc:
    run = night.last_run()
    subtitle = (
        f"Lab `{night.cfg.lab.name}` · night `{night.night_id}` · "
        f"{when(night.runs[0]['started_at']) if night.runs else '—'} → "
        f"{when(run['ended_at']) if run else '—'}"
    )
    return Doc(
        title=f"Experiment Report: {night.cfg.lab.name}",
        subtitle=subtitle,
        sections=[
            summary(night, pick, ranked, test),
            approach(night),
            results(night, pick, top, len(ranked), plots),
            findings.challenges(night),
            findings.recommendations(night, pick, ranked),
        ],
    )
