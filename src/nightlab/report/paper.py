"""`final_paper_report.md`: Summary, Approach, Results, Challenges, Recommendations (the
structure users know from their REPORT.md), built as a `Doc` so the HTML says the same."""

from __future__ import annotations

from typing import Any

from nightlab.ratchet import finite
from nightlab.report import findings, verdicts
from nightlab.report.candidates import Candidate, changed_params, describe_diff, params_text
from nightlab.report.data import Night
from nightlab.report.doc import Bullets, Doc, Image, Para, Section, Table
from nightlab.report.plots import Plot
from nightlab.report.story import when
from nightlab.store import fmt
from nightlab.store.kinds import LIVE_RUN_STATES


def _fig(night: Night, c: Candidate) -> str:
    if not c.confirmed:
        return f"{night.metric} = **{c.figure()}** (one seed; validation"
    how = "mean ± sd" if c.sd is not None else "mean"
    if c.selection is None:  # the baseline: its repeats (and any finish-up runs)
        return f"{night.metric} = **{c.figure()}** ({how} over its {c.n} run(s); validation"
    return (
        f"{night.metric} = **{c.figure()}** (confirmed {how} over {c.n} run(s) on new "
        f"seeds; selection run {c.selection_text()}, left out; validation"
    )


def _label(night: Night, c: Candidate) -> str:
    params = changed_params(night, c.first["params"])
    what = [params_text(params)] if params else []
    if c.diff and c.diff["files_changed"]:
        what.append(f"code: {describe_diff(c.diff)}")
    return ", ".join(what) or "the defaults"


def _change(night: Night, c: Candidate) -> str:
    """`boost 0→5, code: 1 file +1/-1`: what the candidate changed from the defaults."""
    what = [verdicts.param_changes(night.cfg.defaults(), c.first["params"])]
    what = [w for w in what if w]
    if c.diff and c.diff["files_changed"]:
        what.append(f"code: {describe_diff(c.diff)}")
    return ", ".join(what) or "the defaults"


def status(night: Night, pick: Candidate | None) -> tuple[str, str]:
    """(Success|Partial|Failed, why)."""
    if night.baseline is None or pick is None:
        return "Failed", "the baseline never produced an objective"
    if not night.kept():
        why = "no trial beat the baseline by more than the noise"
        avoided = len(night.false_keeps_avoided())
        if avoided:
            why += f" ({avoided} passed the screen on one run but not the confirmation)"
        waiting = night.screened()
        if waiting:
            why += (
                f"; trial(s) {', '.join(str(t['id']) for t in waiting)} passed the screen "
                "but were never confirmed"
            )
        return "Failed", why
    if night.cfg.objective.target is not None and not findings.reached(night, pick):
        return "Partial", f"improved, but the target {night.cfg.objective.target:g} is not reached"
    target = night.cfg.objective.target
    return "Success", "the target is reached" if target is not None else "the baseline was beaten"


def key_finding(night: Night, pick: Candidate, base_c: Candidate | None) -> str:
    """What improved, by how much, with what confidence: the final pick against the
    baseline, and the verdict that kept it (its own figures)."""
    base = night.baseline or {}
    start = base_c.estimate() if base_c is not None else fmt.value(base["objective"])
    n_base = base_c.n if base_c is not None else base.get("n")
    start_mean = base_c.mean if base_c is not None else base["objective"]
    verb = "raised" if pick.mean >= start_mean else "lowered"
    if pick.confirmed:
        picked = "" if pick.selection is None else f"; selection run {pick.selection_text()}"
        end = f"{pick.estimate()} (confirmed, n={pick.n}{picked})"
    else:
        end = f"{fmt.value(pick.mean)} (a single run)"
    steps = len(night.kept())
    text = (
        f"trial {pick.first['id']} ({_change(night, pick)}; "
        f"{pick.first['dimension'] or 'no dimension'}) {verb} {night.metric} from {start} "
        f"(baseline, n={n_base}) to {end}: {pick.mean - start_mean:+.4g} in {steps} kept "
        "step(s)."
    )
    j = pick.judgement or {}
    if finite(j.get("improvement")) and finite(j.get("best_mean")):
        first_base = base.get("trials", [None])[0]
        vs = "the baseline" if j.get("best_trial") == first_base else f"trial {j.get('best_trial')}"
        stage = "confirmation runs" if j.get("stage") == "confirm" else "single run"
        text += (
            f" Its {stage} beat the best of that moment ({vs}: {fmt.value(j['best_mean'])}, "
            f"n={j.get('best_n')}) by {verdicts.confidence_text(night, j)}."
        )
    return text


def summary(
    night: Night, pick: Candidate | None, ranked: list[Candidate], test: dict[str, Any] | None
) -> Section:
    word, why = status(night, pick)
    run = night.last_run()
    items = [f"**Status**: {word} — {why}."]
    if run is not None and run["state"] in LIVE_RUN_STATES:
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
            f"**Key Finding**: nothing beat the baseline "
            f"({f'{base_c.estimate()}, n={base_c.n}' if base_c else '—'}) "
            f"by more than its threshold (each verdict's own; at the end "
            f"{verdicts.noise_text(night)}){other}."
        )
    elif pick.kind == "baseline":
        items.append(
            f"**Key Finding**: the final pick is the baseline itself (trials "
            f"{', '.join(str(i) for i in pick.ids)}), although {len(night.kept())} trial(s) "
            "were kept along the way."
        )
    else:
        items.append(f"**Key Finding**: {key_finding(night, pick, base_c)}")
    if pick is not None:
        items.append(
            f"**Best Performance**: {_fig(night, pick)}; trial(s) "
            f"{', '.join(str(i) for i in pick.ids)})."
        )
    if test is not None:
        items.append(
            f"**Held-out test**: {test['metric']} = **{fmt.value(test['value'])}** for trial "
            f"{test['trial']}, computed once for the final pick (selection used validation only)."
        )
    elif night.test_notes:
        note = night.test_notes[-1]
        why = note["data"].get("reason") or note["data"].get("status") or "no reason recorded"
        metric = note["data"].get("metric") or getattr(night.cfg.objective, "test_metric", None)
        items.append(f"**Held-out test**: no {metric or 'test'} figure ({note['kind']}: {why}).")
    if night.baseline is not None:
        items.append(
            f"**Ratchet**: {verdicts.ratchet_text(night)}. Confirming cost "
            f"{verdicts.cost_text(night)}."
        )
    if pick is not None and ranked and ranked[0] is not pick:
        top = ranked[0]
        what = "confirmed mean" if top.confirmed else "figure (a single run)"
        items.append(
            f"Note: candidate {top.first['id']} has the best {what} ({top.figure()}) but was "
            f"{top.verdict or 'not judged'}; the final pick is the best candidate the ratchet "
            "kept (or the baseline)."
        )
    return Section("Summary").add(Bullets(items))


def _rule(night: Night) -> str:
    """The keep rule as configured, and the noise it ran on at the end of the night."""
    r = night.cfg.ratchet
    md = f"min_delta {r.min_delta:g}"
    if r.confirm_runs:
        rule = (
            f"{r.baseline_repeats} baseline repeat(s); a worker's trial whose single run beats "
            f"the best's mean by more than max({md}, {r.screen_multiplier:g}·σ·√(1 + 1/n_best)) "
            f"passes the screen and is re-run on {r.confirm_runs} new seed(s); it is kept only "
            f"when the mean of those runs beats the best's mean by more than max({md}, "
            f"z·σ·√(1/n + 1/n_best)), z = {r.sigma_multiplier:g} corrected for every "
            "challenger of the same best (Bonferroni). A selection run never counts in a mean."
        )
    else:
        rule = (
            f"{r.baseline_repeats} baseline repeat(s); `confirm_runs = 0`: a worker's trial is "
            f"kept on its single run when it beats the best's mean by more than max({md}, "
            f"{r.sigma_multiplier:g}·σ·√(1 + 1/n_best))."
        )
    if night.baseline is None:
        return rule + " No baseline objective, so no noise estimate."
    return (
        f"{rule} σ is pooled over every candidate that ran more than once and the threshold "
        f"is each verdict's own (see Results); at the end of the night "
        f"**{verdicts.noise_text(night)}**."
    )


def approach(night: Night) -> Section:
    cfg = night.cfg
    roles = ("baseline", "mentor", "finish-up", "ratchet")  # not workers: nightlab's own decisions
    workers = sorted({d["worker"] for d in night.decisions if d["worker"] not in roles})
    if not workers:
        workers = sorted({r["options"].get("worker") or cfg.agents.worker for r in night.runs})
    obj = cfg.objective
    held = getattr(obj, "test_metric", None)  # declared by labs with a held-out split
    target = f", target {obj.target:g}" if obj.target is not None else ""
    rule = _rule(night)
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
                f"**Ratchet**: {rule}",
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


def _candidate_rows(night: Night, pick: Candidate | None, cands: list[Candidate]) -> list:
    """Confirmed candidates: the confirmed mean ± sd, n and the selection run; single runs:
    their one figure."""
    rows = []
    for c in cands:
        figures = [c.estimate(), str(c.n), c.selection_text()] if c.confirmed else [
            fmt.value(c.mean)]  # fmt: skip
        rows.append(
            [f"{c.rank}{' ★' if c is pick else ''}",
             str(c.first["id"]) + (f" (+{len(c.ids) - 1})" if len(c.ids) > 1 else ""),
             *figures, c.verdict or "—",
             c.first["dimension"] or ("baseline" if c.kind == "baseline" else "—"),
             _label(night, c), c.links_text()]
        )  # fmt: skip
    return rows


def results(
    night: Night,
    pick: Candidate | None,
    top: list[Candidate],
    ranked: list[Candidate],
    plots: list[Plot],
) -> Section:
    section = Section("Results")
    counts: dict[str, int] = {}
    for t in night.trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    c = verdicts.counts(night)
    section.add(
        Para(
            f"{len(night.trials)} trial(s) ("
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f"), {c['kept']} kept, {c['not_confirmed']} not confirmed, "
            + (f"{c['screened']} still screened, " if c["screened"] else "")
            + f"{len(ranked)} distinct candidate(s) with an objective"
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
    metric = night.metric
    confirmed = [c for c in top if c.confirmed]
    singles = [c for c in ranked if not c.confirmed][: max(len(top), 1)]
    header = ["rank", "trial", f"{metric} confirmed mean ± sd", "n", "selection run",
              "verdict", "dimension", "change", "links"]  # fmt: skip
    if confirmed:
        section.add(
            Para(
                f"**Top {len(confirmed)} confirmed candidate(s)**, ranked by their confirmed "
                f"{metric}: the mean of their runs on new seeds (baseline repeats, "
                "confirmation runs), never counting the selection run that proposed them "
                "(★ the final pick):"
            ),
            Table(header, _candidate_rows(night, pick, confirmed)),
        )
    if singles:
        header = ["rank", "trial", f"{metric} (single run)", "verdict", "dimension", "change",
                  "links"]  # fmt: skip
        section.add(
            Para(
                f"**Unconfirmed single runs** (best {len(singles)}): one run each, the one that "
                "proposed them — no evidence yet, so they rank after every confirmed "
                "candidate whatever their figure:"
            ),
            Table(header, _candidate_rows(night, pick, singles)),
        )
    header, rows = verdicts.verdict_rows(night, ranked)
    if rows:
        section.add(
            Para(
                "**The ratchet's verdicts** (every trial that passed the screen; each with the "
                "threshold and σ of its own verdict, against the best of that moment):"
            ),
            Table(header, rows),
        )
    avoided = night.false_keeps_avoided()
    section.add(
        Para(
            f"**False keeps avoided: {len(avoided)}** — challengers that passed the screen on "
            "their selection run but whose confirmation runs did not bear it out"
            + (": trial(s) " + ", ".join(str(t["id"]) for t in avoided) if avoided else "")
            + f". **Confirmation cost**: {verdicts.cost_text(night)}."
        )
    )
    section.add(
        Para(
            f"**Noise**: at the end of the night {verdicts.noise_text(night)}; σ over the "
            f"night: {verdicts.sigma_over_night_text(night)}."
        )
    )
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
            results(night, pick, top, ranked, plots),
            findings.challenges(night),
            findings.recommendations(night, pick, ranked),
        ],
    )
