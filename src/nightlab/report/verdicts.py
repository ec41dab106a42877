"""The ratchet's record as the report tells it: every verdict with its own figures (the
trials' `judgement`: the threshold is per verdict, σ pooled as of that verdict), what passed
the screen and what its confirmation made of it (false keeps avoided), the noise over the
night, and what confirming cost in trial time."""

from __future__ import annotations

import math
from typing import Any

from nightlab.ratchet import finite
from nightlab.report.candidates import PARAM_DIGITS, Candidate
from nightlab.report.data import Night
from nightlab.store import fmt

PASSED_SCREEN = ("screened", "kept", "not_confirmed")


def stderr_of(j: dict[str, Any]) -> float | None:
    """The standard error of the difference a verdict judged: σ·√(1/n + 1/n_best)."""
    sigma, n, best_n = j.get("sigma"), j.get("n") or 1, j.get("best_n") or 1
    if not finite(sigma) or sigma <= 0:
        return None
    return sigma * math.sqrt(1 / n + 1 / best_n)


def z_observed(j: dict[str, Any]) -> float | None:
    """How many standard errors of the difference the verdict's improvement is."""
    se = stderr_of(j)
    gain = j.get("improvement")
    return None if se is None or not finite(gain) else gain / se


def threshold_text(night: Night, j: dict[str, Any]) -> str:
    """`threshold 0.0244 (z 2, σ 0.0122, df 5)`; says so when min_delta set it, or when σ
    was not measured yet."""
    limit = j.get("threshold")
    if not finite(limit):
        return "no threshold recorded"
    se = stderr_of(j)
    if se is None:
        return f"threshold {limit:.3g} (min_delta; σ not measured yet)"
    z = j.get("z") or 0.0
    if limit <= z * se * (1 + 1e-9):
        why = f"z {z:.3g}"
    else:
        why = f"min_delta; z {z:.3g} alone would ask {z * se:.3g}"
    return f"threshold {limit:.3g} ({why}, σ {j['sigma']:.3g}, df {j.get('df', 0)})"


def confidence_text(night: Night, j: dict[str, Any]) -> str:
    """`+4.5 against a threshold of 0.0244: z = 368 where the rule asks z > 2 (σ 0.0122,
    df 5)` — how sure the verdict was, in its own figures."""
    gain, limit = j.get("improvement"), j.get("threshold")
    if not finite(gain) or not finite(limit):
        return j.get("reason") or "no figures recorded"
    z, se = z_observed(j), stderr_of(j)
    text = f"{gain:+.3g} against a threshold of {limit:.3g}"
    if z is None or se is None:
        return text + " (min_delta; σ not measured yet)"
    asks = j.get("z") or 0.0
    sigma = f"σ {j['sigma']:.3g}, df {j.get('df', 0)}"
    if limit > asks * se * (1 + 1e-9):
        return text + f" (min_delta): z = {z:.3g} ({sigma})"
    if j.get("stage") == "confirm" and asks > night.cfg.ratchet.sigma_multiplier + 1e-9:
        sigma += "; z corrected for the earlier challengers of the same best"
    return text + f": z = {z:.3g} where the rule asks z > {asks:.3g} ({sigma})"


def noise_text(night: Night) -> str:
    """The night's σ as of its end: the pooled sd, its degrees of freedom, the bound used."""
    noise = night.noise
    if not noise.df:
        return "σ unknown (no candidate ran twice)"
    level = round(100 * night.cfg.ratchet.sigma_confidence)
    return (
        f"σ = {noise.sigma:.3g} (the upper {level}% confidence bound of the pooled sd "
        f"{noise.sd:.3g}, df {noise.df})"
    )


def sigma_over_night_text(night: Night) -> str:
    points = night.sigma_over_night()
    if not points:
        return "no verdict was made with a measured σ"
    first, last = points[0], points[-1]
    low, high = min(p["sigma"] for p in points), max(p["sigma"] for p in points)
    if len(points) == 1:
        return f"one verdict, at σ {first['sigma']:.3g} (df {first['df']})"
    return (
        f"{len(points)} verdicts, from σ {first['sigma']:.3g} (df {first['df']}, trial "
        f"{first['trial']}'s {first['stage']}) to σ {last['sigma']:.3g} (df {last['df']}, "
        f"trial {last['trial']}'s {last['stage']}); the lowest {low:.3g}, the highest {high:.3g}"
    )


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def cost_text(night: Night) -> str:
    """The ratchet's confirmation runs against the night's trial time; finish-up apart."""
    cost = night.confirmation_cost()
    share = "" if cost["share"] is None else f", {100 * cost['share']:.3g}% of"
    text = (
        f"{duration(cost['ratchet_s'])} of trial time in {cost['ratchet_runs']} ratchet "
        f"confirmation run(s){share or ' of'} the night's {duration(cost['total_s'])}"
    )
    if cost["finishup_runs"]:
        text += (
            f"; finish-up's confirmation runs, counted apart: {duration(cost['finishup_s'])} "
            f"in {cost['finishup_runs']} run(s)"
        )
    return text


def passed_screen(night: Night) -> list[dict[str, Any]]:
    """Worker trials that passed the screen (whatever their confirmation made of them), and
    those kept on one run when `confirm_runs` is 0."""
    return [t for t in night.trials if t["kind"] == "trial" and t["verdict"] in PASSED_SCREEN]


def counts(night: Night) -> dict[str, int]:
    worker = [t for t in night.trials if t["kind"] == "trial"]
    return {
        "passed_screen": len(passed_screen(night)),
        "kept": sum(t["verdict"] == "kept" for t in worker),
        "not_confirmed": sum(t["verdict"] == "not_confirmed" for t in worker),
        "screened": sum(t["verdict"] == "screened" for t in worker),
        "discarded": sum(t["verdict"] == "discarded" and t["status"] == "succeeded"
                         for t in worker),
    }  # fmt: skip


def ratchet_text(night: Night) -> str:
    """One sentence: what passed the screen and what became of it."""
    c = counts(night)
    text = (
        f"{c['passed_screen']} trial(s) passed the screen: {c['kept']} kept, "
        f"{c['not_confirmed']} not confirmed on new seeds (**false keeps avoided: "
        f"{c['not_confirmed']}**)"
    )
    if c["screened"]:
        text += f", {c['screened']} still awaiting confirmation (the night stopped first)"
    return text + f"; {c['discarded']} discarded at the screen"


def param_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """`lr 0.01→0.05, depth 2→4`: the parameters that differ."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    keys += [k for k in before if k not in after]
    return ", ".join(f"{k} {_v(before.get(k))}→{_v(after.get(k))}" for k in keys)


def _v(value: Any) -> str:
    return "—" if value is None else fmt.value(value, PARAM_DIGITS)


def _screen_of(j: dict[str, Any]) -> dict[str, Any]:
    return (j.get("screen") or {}) if j.get("stage") == "confirm" else j


def verdict_rows(night: Night, ranked: list[Candidate]) -> tuple[list[str], list[list[str]]]:
    """The table of every trial that passed the screen: its selection run and the screen's
    figures, then its confirmation's figures and verdict."""
    by_trial = {c.first["id"]: c for c in ranked}
    header = ["trial", "change vs its best", "selection run", "screen: gain / threshold",
              f"confirmed {night.metric} (n)", "confirm: gain, z / threshold", "σ (df)",
              "verdict"]  # fmt: skip
    rows = []
    for t in passed_screen(night):
        j = t.get("judgement") or {}
        screen = _screen_of(j)
        best = night.trial(screen.get("best_trial")) if screen.get("best_trial") else None
        change = param_changes(best["params"], t["params"]) if best else ""
        if best and best["commit"] != t["commit"]:
            change = ", ".join(x for x in (change, "code") if x)
        c = by_trial.get(t["id"])
        gain, limit = screen.get("improvement"), screen.get("threshold")
        screen_cell = f"{gain:+.3g} / {limit:.3g}" if finite(gain) and finite(limit) else "—"
        if j.get("stage") == "confirm" and "reason" in j:
            confirm_cell, confirmed = j["reason"], "—"
        elif j.get("stage") == "confirm" and not all(
            finite(j.get(k)) for k in ("improvement", "threshold", "value")
        ):  # JSON keeps no inf: a figure too large for a float is null
            confirm_cell, confirmed = "figures too large to record", "—"
        elif j.get("stage") == "confirm":
            z = z_observed(j)
            ztext = "" if z is None else f", z {z:.3g}"
            confirm_cell = f"{j['improvement']:+.3g}{ztext} / {j['threshold']:.3g}"
            confirmed = f"{fmt.value(j['value'])} (n={j['n']})"
        else:
            confirm_cell = "kept on one run (confirm_runs = 0)" if t["verdict"] == "kept" else (
                "awaiting its runs")  # fmt: skip
            confirmed = "—"
        if c is not None and c.confirmed and confirmed == "—":
            confirmed = c.figure()
        vs = j if j.get("stage") == "confirm" and "reason" not in j else screen
        sigma = f"{vs['sigma']:.3g} ({vs['df']})" if vs.get("df") else "—"
        rows.append(
            [str(t["id"]), change or "—",
             "—" if t["objective"] is None else fmt.value(t["objective"]), screen_cell, confirmed,
             confirm_cell, sigma, t["verdict"]]
        )  # fmt: skip
    return header, rows
