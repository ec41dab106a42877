"""Rich renderings of the lab's state for the terminal (status, leaderboard, watch)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from nightlab.store import fmt

STATE_STYLE = {
    "running": "bold green",
    "finished": "bold blue",
    "stopped": "yellow",
    "crashed": "bold red",
    "new": "dim",
}


def _num(v: Any) -> str:
    return "—" if v is None else fmt.value(v)


def summary(st: dict[str, Any]) -> Text:
    t = st["trials"]
    text = Text()
    text.append(f"{st['lab']}: ", style="bold")
    text.append(st["state"], style=STATE_STYLE.get(st["state"], ""))
    if st.get("heartbeat_age_s") is not None and st["state"] == "running":
        text.append(f" (heartbeat {st['heartbeat_age_s']:.0f}s ago, PID {st['pid']})")
    if st.get("end_reason") and st["state"] != "running":
        text.append(f" — {st['end_reason']}")
    text.append(
        f"\ncycles {st['cycles']} · trials {t['total']} (succeeded {t['succeeded']}, "
        f"failed {t['failed']}, running {t['running']}, kept {t['kept']})"
    )
    base = st.get("baseline")
    if base:
        text.append(
            f"\nbaseline {_num(base['objective'])} ± {_num(base['sigma'])} over {base['n']} seed(s)"
        )
    best = st.get("best")
    if best and base and best["trial"] in base["trials"]:
        text.append(
            "\nbest: the baseline — no trial has beaten it by more than the noise", style="bold"
        )
    elif best:
        params = " ".join(f"{k}={_num(v)}" for k, v in best["params"].items())
        text.append(
            f"\nbest: trial {best['trial']} objective {_num(best['objective'])}  {params}",
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
        text.append(f"\nlast: {st['last_story']}", style="dim")
    return text


def leaderboard_table(rows: list[dict[str, Any]], lab: str) -> Table:
    table = Table(title=f"leaderboard — {lab}", title_justify="left")
    for col in ("rank", "trial", "objective", "verdict", "code", "wall s", "params"):
        table.add_column(col, no_wrap=col != "params")
    for r in rows:
        params = " ".join(f"{k}={fmt.value(v, 3)}" for k, v in r["params"].items())
        code = "changed" if r["commit"] != r["base_commit"] else "base"
        style = "green" if r["verdict"] == "kept" else None
        table.add_row(
            str(r["rank"]),
            str(r["trial"]),
            _num(r["objective"]),
            r["verdict"] or "",
            code,
            _num(r["wall_s"]),
            params,
            style=style,
        )
    return table


def render(lab: Any) -> Group:
    st = lab.status()
    story = Table.grid()
    for line in lab.storyline(last=8):
        story.add_row(Text(line, style="dim"))
    stamp = Text(time.strftime("updated %H:%M:%S"), style="dim")
    return Group(summary(st), leaderboard_table(lab.leaderboard(5), st["lab"]), story, stamp)
