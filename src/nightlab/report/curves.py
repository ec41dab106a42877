"""Learning curves: the objective's recorded history (`trials/<id>/metrics.jsonl`) of the
best candidates and the baseline, in one figure. Trials that recorded no point of the
objective are left out; a long history is thinned to `MAX_POINTS` evenly spread points (the
first and the last kept), so a 200k-point trial draws as fast and as small as a short one.
A trial with a single point has no curve: it is left out too."""

from __future__ import annotations

import json
import math
from pathlib import Path

from nightlab.report.candidates import Candidate
from nightlab.report.data import Night
from nightlab.report.plots import COLORS, Plot, _pyplot, _save
from nightlab.store.paths import METRICS

NAME = "learning_curves"
MAX_CURVES = 6  # the baseline and the best candidates, so the legend stays readable
MAX_POINTS = 1000


def history(trial_dir: Path, metric: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `metric` in a trial's metrics.jsonl, in the order recorded; a
    point without a step takes its place in the order. Non-finite values are left out."""
    xs: list[float] = []
    ys: list[float] = []
    key = json.dumps(metric)  # as `finish` writes it: a non-ASCII name as \\u escapes
    try:
        with (trial_dir / METRICS).open(encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f):
                if key not in line:
                    continue  # most lines of a long history are other metrics: skip the parse
                try:
                    rec = json.loads(line)
                    value = float(rec["metrics"][metric])
                except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
                    continue  # an integer too large for a float is no point either
                step = rec.get("step")
                try:
                    x = float(step) if isinstance(step, int | float) and math.isfinite(step) else i
                except OverflowError:  # a step too large for a float: its place in the order
                    x = i
                if math.isfinite(value):
                    xs.append(x)
                    ys.append(value)
    except FileNotFoundError:
        pass
    return xs, ys


def thin(xs: list[float], ys: list[float], n: int = MAX_POINTS) -> tuple[list, list]:
    """At most `n` points, evenly spread over the history, the first and the last among them."""
    if len(xs) <= n:
        return xs, ys
    idx = sorted({round(i * (len(xs) - 1) / (n - 1)) for i in range(n)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def learning_curves(night: Night, ranked: list[Candidate], out: Path) -> Plot:
    """The objective over steps for the baseline's first run and the best candidates."""
    title = f"learning curves ({night.metric})"
    base = next((c for c in ranked if c.kind == "baseline"), None)
    chosen = ([base] if base else []) + [c for c in ranked if c is not base]
    curves = []
    for c in chosen:
        xs, ys = history(night.paths.trial(c.first["id"]), night.metric)
        if len(xs) >= 2:  # one point is a figure, not a curve: the other plots show it
            curves.append((c, *thin(xs, ys)))
        if len(curves) == MAX_CURVES:
            break
    if not curves:
        why = f"no trial recorded a history of {night.metric} (two or more points)"
        return Plot(NAME, title, None, why)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for c, xs, ys in curves:
        label = "baseline" if c is base else f"#{c.first['id']} (rank {c.rank})"
        style = {"color": COLORS["baseline"], "ls": "--"} if c is base else {}
        ax.plot(xs, ys, lw=1.2, label=label, **style)
    ax.set_xlabel("step")
    ax.set_ylabel(night.metric)
    ax.set_title(f"{title}: the baseline and the best candidates' first runs")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return Plot(NAME, title, _save(fig, out, NAME))
