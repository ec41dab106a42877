"""Rich renderings of the lab's state for the terminal (status, leaderboard); the watch
panel is `nightlab.lab.watch`."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from nightlab.store import fmt

STATE_STYLE = {
    "running": "bold green",
    "finished": "bold blue",
    "stopped": "yellow",
    "crashed": "bold red",
    "requeued": "yellow",
    "new": "dim",
}


def clean(value: Any, limit: int = 120) -> str:
    """`value` as one line of plain text: cut to `limit` characters first, then every
    character that is not printable (ESC, newlines, other controls) shown as '�'. What
    an agent or a trial wrote (a rationale, a reason) cannot drive the terminal."""
    text = str(value)[:limit]
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def _num(v: Any) -> str:
    return "—" if v is None else fmt.value(v)


def estimate(best: dict[str, Any]) -> str:
    """A candidate's figure as `read.best`/`ranking.leaderboard` give it: `confirmed mean ± sd
    (n=…; selection run …)`, or `value (single run)`."""
    if best.get("confirmed_mean") is None:
        return f"{_num(best['objective'])} (single run)"
    sd = "" if best.get("sd") is None else f" ± {_num(best['sd'])}"
    picked = "" if best.get("selection") is None else f"; selection run {_num(best['selection'])}"
    return f"{_num(best['confirmed_mean'])}{sd} (n={best['n']}{picked})"


def summary(st: dict[str, Any], metric: str | None = None) -> Text:
    t = st["trials"]
    text = Text()
    text.append(f"{clean(st['lab'])}: ", style="bold")
    text.append(st["state"], style=STATE_STYLE.get(st["state"], ""))
    if st.get("heartbeat_age_s") is not None and st["state"] == "running":
        text.append(f" (heartbeat {st['heartbeat_age_s']:.0f}s ago, PID {st['pid']})")
    if st.get("end_reason") and st["state"] != "running":
        text.append(f" — {clean(st['end_reason'], 400)}")
    if job := st.get("loop_job"):
        where = job["queue"] or "no longer in Slurm's queue"
        if st["state"] == "requeued" and not job["queue"]:
            where += " (`nightlab start --slurm` resumes the night, `nightlab stop` ends it)"
        text.append(f"\nSlurm loop job {job['job_id']}: {where}")
    ratchet = f", kept {t['kept']}"
    if t.get("not_confirmed"):
        ratchet += f", not confirmed {t['not_confirmed']}"
    if t.get("screened"):
        ratchet += f", awaiting confirmation {t['screened']}"
    text.append(
        f"\ncycles {st['cycles']} · trials {t['total']} (succeeded {t['succeeded']}, "
        f"failed {t['failed']}, "
        + (f"pruned {t['pruned']}, " if t.get("pruned") else "")
        + f"running {t['running']}{ratchet})"
    )
    name = f"{metric} " if metric else ""
    base = st.get("baseline")
    if base:
        text.append(
            f"\nbaseline {name}{_num(base['objective'])} ± {_num(base['sigma'])} over "
            f"{base['n']} seed(s)"
        )
    best = st.get("best")
    if best and base and best["trial"] in base["trials"]:
        text.append(
            f"\nbest: the baseline, {name}{estimate(best)} — no trial has beaten it by more "
            "than the noise",
            style="bold",
        )
    elif best:
        params = clean(" ".join(f"{k}={_num(v)}" for k, v in best["params"].items()), 400)
        text.append(
            f"\nbest: trial {best['trial']} {name or 'objective '}{estimate(best)}  {params}",
            style="bold",
        )
    spent = st.get("usage") or {}
    if spent.get("requests"):
        usd = "" if spent.get("usd") is None else f", ${spent['usd']:.4f}"
        text.append(
            f"\nagents: {spent['input_tokens'] + spent['output_tokens']} tokens in "
            f"{spent['requests']} request(s){usd}"
        )
    if st.get("last_story"):
        text.append(f"\nlast: {clean(st['last_story'], 400)}", style="dim")
    return text


def leaderboard_table(rows: list[dict[str, Any]], lab: str, metric: str | None = None) -> Table:
    """Candidates as `ranking.leaderboard` ranks them: the confirmed ones by their confirmed
    mean (± sd over n runs on new seeds; the selection run apart), then the single runs,
    marked and dimmed."""
    name = metric or "objective"
    table = Table(
        title=f"leaderboard — {lab} · {name}: confirmed mean over new seeds, single runs last",
        title_justify="left",
    )
    for col in ("rank", "trial", name, "± sd", "n", "selection", "verdict", "code", "wall s",
                "params"):  # fmt: skip
        table.add_column(col, no_wrap=col != "params")
    for r in rows:
        params = Text(clean(" ".join(f"{k}={fmt.value(v, 3)}" for k, v in r["params"].items()),
                            1000))  # fmt: skip  # a Text: never read as Rich markup
        code = "changed" if r["commit"] != r["base_commit"] else "base"
        single = not r.get("confirmed", True)
        style = "dim" if single else "green" if r["verdict"] == "kept" else None
        table.add_row(
            str(r["rank"]),
            str(r["trial"]),
            _num(r["objective"]) + (" (single run)" if single else ""),
            "" if r.get("sd") is None else f"± {_num(r['sd'])}",
            "—" if single else str(r.get("n", "")),
            _num(r.get("selection")) if r.get("selection") is not None else "—",
            Text(clean(r["verdict"] or "")),
            code,
            _num(r["wall_s"]),
            params,
            style=style,
        )
    return table


def metric_of(lab: Any) -> str | None:
    """The lab's objective metric, read without validating the whole config (None when
    nightlab.toml does not say)."""
    try:
        return str(lab._quick("objective", "metric"))
    except Exception:  # a view never fails for want of a name
        return None
