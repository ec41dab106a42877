"""The report's Pruning part: how many worker trials `[pruning]` stopped early, the
trial-seconds they used against their budget, an estimate of the compute saved, each one's
record (step, value, reference, rule), and a plot of their partial curves against the
baseline envelope (read from the trial folders by `nightlab.store.pruned`)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from nightlab.report.data import Night
from nightlab.report.doc import Image, Para, Section, Table
from nightlab.report.plots import COLORS, Plot, _pyplot, _save
from nightlab.store import fmt, pruned, read

PLOT = "pruned_curves"
MAX_DRAWN = 20  # pruned curves in the plot (the table lists more)


def gather(night: Night) -> dict[str, Any]:
    """The figures (store.pruned.figures) and the pruned trials' records, from the store."""
    with closing(read.connect(night.paths.db)) as conn:
        out = pruned.figures(conn, night.cfg.trial.budget_seconds)
        out["trials"] = pruned.listed(conn)
    return out


def _secs(s: float | None) -> str:
    return "—" if s is None else f"{s:,.1f} s" if s < 600 else f"{s / 3600:,.2f} h ({s:,.0f} s)"


def _num(v: Any) -> str:
    return "—" if v is None else fmt.value(v)


def section(night: Night, got: dict[str, Any], plot: Plot | None) -> Section:
    """The Pruning part: a line when nothing was pruned (or pruning is off), else the
    figures, the table of pruned trials and the plot."""
    part = Section("Pruning")
    kind = night.cfg.pruning.kind
    if kind == "none" and not got["n"]:
        return part.add(Para('Pruning was off (`[pruning] kind = "none"`): every trial ran to '
                             "its end or its budget."))  # fmt: skip
    if not got["n"]:
        return part.add(Para(f"Pruning was on (`{kind}`) but stopped no trial: no worker "
                             "trial's curve fell below the reference at a step."))  # fmt: skip
    n, budget = got["n"], night.cfg.trial.budget_seconds
    text = (
        f"**{n} worker trial(s) pruned** (`{kind}`): stopped early because their curve, at a "
        f"step, was worse than the reference the rule draws from the other curves there. "
        f"They used **{_secs(got['used_s'])}** of trial time against a budget of "
        f"{_secs(got['budget_s'])} ({n} × {budget:g} s)."
    )
    if got["saved_s"] is not None:
        how = (
            f"{n} × the median wall time of a worker trial that ran to its end "
            f"({_secs(got['full_s'])}, over {got['full_n']} trial(s)) minus what the pruned "
            "ones used"
        )
        if got["saved_s"] > 0:
            text += f" **Compute saved (an estimate): {_secs(got['saved_s'])}** — {how}."
        else:
            text += f" By the estimate ({how}) pruning saved no compute: the full runs are short."
    else:
        text += " No worker trial ran to its end, so the compute saved cannot be estimated."
    part.add(Para(text))
    part.add(Para("A pruned trial has no objective and is **never kept**: it is no candidate, "
                  "and nothing it did moves the base. Its partial curve is kept in its folder "
                  "(metrics.jsonl) and in its MLflow run."))  # fmt: skip
    rows = []
    for t in got["trials"]:
        r = t["record"]
        rows.append([str(t["id"]), _num(r.get("step")), _num(r.get("value")),
                     _num(r.get("best")), _num(r.get("reference")), str(r.get("rule") or "—"),
                     _num(r.get("curves")), _secs(t["wall_s"]),
                     str(t["dimension"] or "—")])  # fmt: skip
    metric = night.metric
    part.add(Table(["trial", "step", f"{metric} at step", "best so far", "reference", "rule",
                    "curves", "wall", "dimension"], rows))  # fmt: skip
    if n > len(rows):
        part.add(Para(f"… and {n - len(rows)} more (see `nightlab status`)."))
    if plot is not None and plot.file:
        part.add(Image(plot.file, plot.title))
    elif plot is not None:
        part.add(Para(f"**Plot skipped** — {plot.title}: {plot.skipped}."))
    return part


def plot(night: Night, got: dict[str, Any], out: Path) -> Plot | None:
    """The pruned trials' objective curves (each to its pruning step, marked) against the
    baseline envelope (min–max band, mean); None when nothing was pruned."""
    title = f"pruned trials' {night.metric} against the baseline envelope"
    if not got["n"]:
        return None
    metric = night.metric
    with closing(read.connect(night.paths.db)) as conn:
        env = pruned.baseline_envelope(conn, night.paths.trial, metric)
    drawn = [(t, pruned.curve(night.paths.trial(t["id"]), metric))
             for t in got["trials"][:MAX_DRAWN]]  # fmt: skip
    drawn = [(t, c) for t, c in drawn if c["x"]]
    if not drawn and not env["x"]:
        return Plot(PLOT, title, None, f"no {metric} curve with steps in the trial folders")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    if env["x"]:
        ax.fill_between(env["x"], env["lo"], env["hi"], color=COLORS["baseline"], alpha=0.25,
                        step=None, label="baseline repeats (min–max)")  # fmt: skip
        ax.plot(env["x"], env["mean"], color=COLORS["baseline"], lw=1.5, ls="--",
                label="baseline mean")  # fmt: skip
    cmap = plt.get_cmap("autumn")
    for i, (t, c) in enumerate(drawn):
        color = cmap(i / max(len(drawn) - 1, 1) * 0.8)
        ax.plot(c["x"], c["y"], color=color, lw=1.2, label=f"trial {t['id']}")
        step = t["record"].get("step")
        if step in c["x"]:
            y = c["y"][c["x"].index(step)]
            ax.scatter([step], [y], marker="X", s=60, color=COLORS["failed"], zorder=4)
            ax.annotate(f"#{t['id']} pruned", (step, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{title} (×: pruned at)")
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.grid(alpha=0.3)
    return Plot(PLOT, title, _save(fig, out, PLOT))
