"""The report's figures as PNG files (matplotlib, Agg backend, imported only when drawing).

Each plot returns a `Plot`: its file, or None with the reason it was skipped, so the report
can say so instead of leaving a hole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.report.candidates import Candidate
from nightlab.report.data import Night

COLORS = {
    "baseline": "#7f7f7f",
    "kept": "#2ca02c",
    "discarded": "#1f77b4",
    "screened": "#bcbd22",
    "not_confirmed": "#ff7f0e",
    "confirmation": "#9467bd",
    "failed": "#d62728",
    "pruned": "#b36b00",
}
LABELS = {
    "not_confirmed": "not confirmed (false keep avoided)",
    "kept": "kept (selection run)",
    "screened": "screened (never confirmed)",
    "confirmation": "confirmation run",
}


@dataclass
class Plot:
    name: str
    title: str
    file: str | None  # relative to the report folder
    skipped: str | None = None  # why there is no file


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> str:
    file = f"{name}.png"
    fig.tight_layout()
    fig.savefig(out / file, dpi=100)
    _pyplot().close(fig)
    return file


def guarded(name: str, draw: Callable[..., Any], *args: Any) -> Any:
    """`draw(*args)`, or the plot skipped when matplotlib cannot draw it: a trial's values
    are the trial's to choose, and finite ones as extreme as ±1e308 make its scaling raise
    (`arange: cannot compute length`, a singular matrix); the report is written all the same."""
    try:
        return draw(*args)
    except (ValueError, ArithmeticError) as exc:
        _pyplot().close("all")
        why = f"matplotlib could not draw it ({type(exc).__name__}): values too extreme to scale"
        return Plot(name, name.replace("_", " "), None, why)


def draw_all(night: Night, candidates: list[Candidate], out: Path) -> list[Plot]:
    """Every plot of the report, drawn into `out`."""
    return [
        guarded("objective_per_trial", objective_per_trial, night, out),
        guarded("best_so_far", best_so_far, night, out),
        guarded("by_dimension", by_dimension, night, out),
        guarded("seed_spread", spread, night, candidates, out),
        guarded("sigma_over_night", sigma_over_night, night, out),
    ]


def objective_per_trial(night: Night, out: Path) -> Plot:
    title = f"{night.metric} per trial"
    done = night.succeeded()
    if not done:
        return Plot("objective_per_trial", title, None, "no trial succeeded with an objective")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label in ("baseline", "discarded", "confirmation", "screened", "not_confirmed", "kept"):
        pts = [
            t for t in done if (t["verdict"] if t["verdict"] in COLORS else "discarded") == label
        ]
        if pts:
            ax.scatter(
                [t["id"] for t in pts],
                [t["objective"] for t in pts],
                c=COLORS[label],
                s=80 if label == "kept" else 30,
                marker="*" if label == "kept" else "o",
                label=LABELS.get(label, label),
                zorder=3,
            )
    low = min(t["objective"] for t in done)
    for what, marker, label in ((night.failures(), "x", "failed / timeout / killed"),
                                (night.pruned(), "v", "pruned (stopped early)")):  # fmt: skip
        if what:
            color = COLORS["pruned" if marker == "v" else "failed"]
            ax.scatter([t["id"] for t in what], [low] * len(what), c=color,
                       marker=marker, label=f"{label} (no objective)", zorder=3)  # fmt: skip
    if night.baseline is not None:
        mean, sigma = night.baseline["objective"], night.noise.sigma
        ax.axhline(mean, color=COLORS["baseline"], lw=1, ls="--", label="baseline mean")
        if sigma:
            ax.axhspan(mean - sigma, mean + sigma, color=COLORS["baseline"], alpha=0.12,
                       label="± σ (at the end of the night)")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(night.metric)
    ax.set_title(f"{title} ({night.cfg.objective.direction})")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return Plot("objective_per_trial", title, _save(fig, out, "objective_per_trial"))


def best_so_far(night: Night, out: Path) -> Plot:
    title = "best so far over time"
    done = sorted(night.succeeded(), key=lambda t: t["ended_at"] or t["started_at"])
    if not done:
        return Plot("best_so_far", title, None, "no trial succeeded with an objective")
    start = min(t["started_at"] for t in night.trials)
    span = max((t["ended_at"] or t["started_at"]) - start for t in done)
    unit, scale = (
        ("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200 else ("hours", 3600.0)
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    xs, best, running = [], [], None
    for t in done:
        v = t["objective"]
        if running is None or night.better(v, running):
            running = v
        xs.append(((t["ended_at"] or t["started_at"]) - start) / scale)
        best.append(running)
    ax.scatter(xs, [t["objective"] for t in done], c="#aaaaaa", s=15, label="trial", zorder=2)
    ax.step(xs, best, where="post", color=COLORS["discarded"], label="best single run", lw=1.5)
    kept = sorted(
        (t for t in done if t["verdict"] == "kept"), key=lambda t: t["judged_at"] or t["ended_at"]
    )
    if night.baseline is not None:
        # the base as the ratchet saw it: each kept trial's confirmed mean, from its verdict
        kx = [0.0] + [((t["judged_at"] or t["ended_at"]) - start) / scale for t in kept]
        ky = [night.baseline["objective"]] + [_kept_value(t) for t in kept]
        kx.append(max(xs + kx))
        ky.append(ky[-1])
        ax.step(kx, ky, where="post", color=COLORS["kept"], lw=2,
                label="ratchet base (confirmed mean when kept)")  # fmt: skip
    ax.set_xlabel(f"{unit} since the night began")
    ax.set_ylabel(night.metric)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return Plot("best_so_far", title, _save(fig, out, "best_so_far"))


def _kept_value(t: dict[str, Any]) -> float:
    """A kept trial's figure when it was kept: its confirmation runs' mean (its single run
    when it was kept on one)."""
    j = t.get("judgement") or {}
    value = j.get("value")
    return value if isinstance(value, int | float) else t["objective"]


def by_dimension(night: Night, out: Path) -> Plot:
    title = f"{night.metric} by dimension"
    done = night.succeeded()
    if not done:
        return Plot("by_dimension", title, None, "no trial succeeded with an objective")
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in done:
        name = "baseline" if t["kind"] == "baseline" else (t["dimension"] or "unspecified")
        groups.setdefault(name, []).append(t)
    names = sorted(groups, key=lambda n: (n != "baseline", n))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(names):
        pts = groups[name]
        n = len(pts)
        xs = [i + (j - (n - 1) / 2) * min(0.05, 0.6 / max(n, 1)) for j in range(n)]
        colors = [COLORS.get(t["verdict"] or "discarded", COLORS["discarded"]) for t in pts]
        ax.scatter(xs, [t["objective"] for t in pts], c=colors, s=30, zorder=3)
        if n > 1:
            values = [t["objective"] for t in pts]
            ax.hlines(sum(values) / n, i - 0.3, i + 0.3, color="black", lw=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n({len(groups[n])})" for n in names], fontsize=8)
    ax.set_ylabel(night.metric)
    ax.set_title(f"{title} (green: kept; bar: mean)")
    ax.grid(alpha=0.3, axis="y")
    return Plot("by_dimension", title, _save(fig, out, "by_dimension"))


def spread(night: Night, candidates: list[Candidate], out: Path) -> Plot:
    title = "spread over seeds per candidate"
    multi = [c for c in candidates if len(c.values) >= 2][:20]
    if not multi:
        return Plot("seed_spread", title, None, "no candidate ran with two or more seeds")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    labelled = False
    for i, c in enumerate(multi):
        ax.scatter([i] * len(c.values), c.values, c="#aaaaaa", s=15, zorder=2)
        ax.errorbar(
            [i], [c.mean], yerr=[c.sd or 0.0], fmt="o", capsize=6, zorder=3,
            color=COLORS.get(c.verdict or "discarded", COLORS["discarded"]),
        )  # fmt: skip
        if c.selection is not None:
            label = None if labelled else "selection run (not in the mean)"
            ax.scatter([i + 0.15], [c.selection], marker="x", c="black", s=30, zorder=3,
                       label=label)  # fmt: skip
            labelled = True
    ax.set_xticks(range(len(multi)))
    ax.set_xticklabels([f"#{c.first['id']}\nn={c.n}" for c in multi], fontsize=8)
    ax.set_xlabel("candidate (first trial)")
    ax.set_ylabel(night.metric)
    ax.set_title(f"{title} (confirmed mean ± sd; ×: selection run)")
    if labelled:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="y")
    return Plot("seed_spread", title, _save(fig, out, "seed_spread"))


def sigma_over_night(night: Night, out: Path) -> Plot:
    """The σ each verdict was made with, in the order they were made (the pooled noise
    grows its degrees of freedom as candidates run again), and σ at the end."""
    title = "σ over the night"
    points = night.sigma_over_night()
    if not points:
        return Plot("sigma_over_night", title, None, "no verdict was made with a measured σ")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = [p["at"] for p in points]
    ax.step(xs, [p["sigma"] for p in points], where="post", color="#555555", lw=1, zorder=2)
    for stage, marker, color in (("screen", "o", COLORS["discarded"]),
                                 ("confirm", "^", COLORS["kept"])):  # fmt: skip
        pts = [p for p in points if p["stage"] == stage]
        if pts:
            ax.scatter([p["at"] for p in pts], [p["sigma"] for p in pts], marker=marker,
                       c=color, s=30, zorder=3, label=f"{stage} verdict")  # fmt: skip
    for p in points:
        ax.annotate(f"df {p['df']}", (p["at"], p["sigma"]), textcoords="offset points",
                    xytext=(0, 6), fontsize=7, ha="center", color="#555555")  # fmt: skip
    if night.noise.df:
        ax.axhline(night.noise.sigma, color=COLORS["baseline"], ls="--", lw=1,
                   label=f"at the end: {night.noise.sigma:.3g} (df {night.noise.df})")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (a confirmation: at its last run)")
    ax.set_ylabel(f"σ ({night.metric})")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return Plot("sigma_over_night", title, _save(fig, out, "sigma_over_night"))
